"""gRPC plumbing shared by the broker, the vendor and the wallet.

This is the one part of the core package that imports grpc: server
construction (health + reflection + limits), the single NetPayError <->
gRPC status mapping, bearer metadata and vendor-to-vendor call signatures.
"""
