"""The local library: scoring at scale, `agqg explain`, the command line and the offline tiny-CLIP builders.

Nothing here travels with the weights (the remote-code files are the flat `*_agqg.py` files one folder up).
"""
