"""The `netpay` command: the composition root that knows every party."""
