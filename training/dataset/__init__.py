"""HDF5 datasets: the schema, a crash-safe resumable writer and a validating reader."""
