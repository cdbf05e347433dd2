"""The Durable Task gRPC sidecar: official ``durabletask`` SDK workers and clients on a
taskloom hub (see ``docs/grpc.md``). Protobuf appears only in this package."""

from taskloom.grpc.server import GrpcServer, Sidecar

__all__ = ["GrpcServer", "Sidecar"]
