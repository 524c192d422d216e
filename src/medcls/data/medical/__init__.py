"""Clinical CT formats: DICOM series and NIfTI volumes, read as HU and shown through CT
windows as the ``(H, W, 3)`` uint8 slices every medcls source hands on.

- :mod:`~medcls.data.medical.dicom`: headers, series listing, slices as HU (pydicom);
- :mod:`~medcls.data.medical.nifti`: volumes in RAS+, axial display slices, masks (nibabel);
- :mod:`~medcls.data.medical.windows`: CT windows, HU → uint8 channels;
- :mod:`~medcls.data.medical.address`: a slice's ``Record.path`` (``dicom:…``, ``nifti:…#z=k``);
- :mod:`~medcls.data.medical.demo`: a small DICOM/NIfTI study written from COVID-CT slices.

Pure reading functions; the data sources, the decode cache and the configs build on them.
Nothing is imported here: pydicom and nibabel load only when a CT file is read (every run
imports the windows, through the preprocessing).
"""
