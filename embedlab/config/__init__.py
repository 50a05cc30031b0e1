"""From Hydra configuration to objects: the conf/ folder, building encoders and settings from config nodes
(`build`), and the cross-field checks a schema cannot state (`check`)."""
