"""Action heads behind one protocol (`base`): chunk regression (`regression`), ACT (`act`),
Diffusion Policy (`diffusion`), flow matching (`flow_matching`), one constructor (`heads`);
observation encoders and image augmentation (`encoders`); action chunking and temporal ensembling
(`chunking`)."""
