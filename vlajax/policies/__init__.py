"""Action heads shared by imitation learning and the VLA (protocol in ``base``).

``flow_matching``: flow-matching math (pi0 convention) and ``FlowMatchingPolicy`` over a small
observation encoder (``encoders``); ``chunking``: action chunks and temporal ensembling.
"""
