"""The simulated caller: a scripted party that talks to the voice service over Twilio Media
Streams, exactly as the carrier connects (docs/voice.md, "Test calls"; docs/carrier.md, "Scripts").

- `scripts`: the script format (say, interrupt, press, wait_for_silence, wait_seconds,
  converse, hang_up);
- `media`: the caller's side of a media stream (the WebSocket client, its voice, the playout);
- `audio`: 8 kHz mu-law frames and the offline voices (Piper, espeak-ng, a synthetic signal);
- `voice`: the caller's lines through the platform's configured text-to-speech.

Core, not local-only: the carrier simulator's parties and the test calls (`services.test_calls`,
which run on AWS too) both use it.
"""
