"""The gRPC xDS server: SotW and Delta streams over ADS and the per-type services."""
