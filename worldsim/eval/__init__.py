"""Evaluation: how far the learned simulator can be trusted.

Files: `episodes` (rolling real worlds), `probes` (pixel probes with ground truth),
`probe_suite` (probe episodes per family, scored on real or generated frames), `compare`
(real vs simulated per horizon), `idm` (inverse-dynamics action-following), `consistency`
(look away and back), `plots` and `video` (PNG and mp4 without matplotlib), `report` (JSON and
markdown), `run` (the `worldsim eval` pipeline).
"""
