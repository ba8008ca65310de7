"""A seventh detection branch made by a test, as a new branch is made: one registry entry
(`declaration.BRANCH`, given to every process through DFMESH_EXTRA_BRANCHES) and its
service module (`service`, served by `python -m tests.seventh_branch`)."""
