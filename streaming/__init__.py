"""The MQTT service that streams the zoo's models: per-device state, micro-batches, one step per reading.

Built on the zoo's runtime — `zoo.step.StepModel` (exact numpy steps) — never the other way round. Pieces:
`StateTable` (state.py), `WindowModel` (window.py), payload parsing (payloads.py), `Service` (service.py),
the simulator and demo, and `register` for the rnnzoo CLI (cli.py). Importing this package imports neither
Keras nor TensorFlow.
"""
