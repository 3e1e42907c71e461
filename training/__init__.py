"""Offline side of carpose: render synthetic cars, pack HDF5 datasets, train, export.

Data flows one way: ``cars`` (models) -> ``render`` (images + labels) -> ``dataset`` (HDF5) -> train.
"""
