"""``omnifield process``: camera poses from raw photos or a video (COLMAP through pycolmap) into a scene folder.

``inputs`` lists and checks the photos, ``video`` picks sharp frames from a video, ``sfm`` runs feature
extraction, matching, incremental mapping and undistortion, ``scene_folder`` writes what ``omnifield train``
reads (``images*/``, ``sparse/0``, ``transforms.json``, ``sparse_pc.ply``), ``cli`` ties them together.
"""
