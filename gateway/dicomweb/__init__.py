"""DICOMweb (PS3.18) from the spool: QIDO-RS queries, WADO-RS retrieval, STOW-RS storage.

The gateway owns every way an instance comes in or goes out as DICOM, so STOW-RS runs through
the same intake as C-STORE (checks, statuses, durability), and WADO-RS serves the spooled files
byte for byte. The routes are mounted on the web app by the composition root, which also hands
in who may read and who may store (the web app's login and service token).
"""
