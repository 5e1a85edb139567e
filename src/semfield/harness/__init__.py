"""The evaluation harness: every published protocol on a trained run (``semfield eval``) and suites of
generated scenes trained and evaluated end to end (``semfield bench``). Metric maths lives in
:mod:`semfield.eval` (pure functions); this package reads runs and scenes and composes them."""
