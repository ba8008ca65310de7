"""Training, evaluation and export of the detection models (PyTorch; never imported by services).

Entry point: `python -m training <command>` (see `training.cli`). Each branch trains from a
module `training.train_<branch>` exposing `add_arguments(parser)` and `run(args)`, so a new
branch plugs into the same command line by adding one module. Models are exported to ONNX
under `models/<branch>/<version>/` with a manifest (`training.export`); inputs are always made
by the torch-free functions in `dfmesh.preprocess`, exactly as the services make them.

    training.data       real faces from ../shared/data: MTCNN detections cached under runs/,
                        identity-disjoint train/val/test splits, torch datasets
    training.fakes      pseudo-fake generators (a registry users extend): self-blended images,
                        face swaps, re-compression, resampling artifacts, temporal flicker
    training.models     Tiny-LaDeDa, ResNet-18 / EfficientNet-B0, BiLSTM / 1-D CNN, MRI-GAN
"""
