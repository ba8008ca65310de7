"""What the tests and the benchmarks share, so that neither imports the other.

- `known_models`: small real ONNX models whose logit is a known function of their input, a
  real scikit-learn fusion bundle, and model repositories built from them or from models/.
- `media`: the shared public media (../shared/data) and real inputs cut from it.
- `branch_requests`: BranchRequest streams built from those inputs, and the call that sends
  one to a branch service.

The mesh as processes lives in `dfmesh.launcher` (the CLI uses it too).
"""
