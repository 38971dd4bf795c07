"""Evaluation: how far the learned simulator can be trusted.

Files: `config` (the typed `worldsim eval` configuration), `episodes` (rolling real worlds),
`probes` (pixel probes with ground truth), `probe_suite` (probe episodes per family, scored on
real or generated frames), `simulated` (driving the simulator with given context and actions),
`paired` (real and simulated rollouts from the same context and actions), `compare` (real vs
simulated per horizon), `idm` (inverse-dynamics action-following), `consistency` (look away and
back), `plots` (PNG line plots without matplotlib; mp4 lives in `worldsim.video`), `report` (JSON
and markdown), `run` (the `worldsim eval` pipeline).
"""
