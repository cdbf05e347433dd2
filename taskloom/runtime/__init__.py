"""The runtime: turning executor results into store writes, dispatch loops, leases."""
