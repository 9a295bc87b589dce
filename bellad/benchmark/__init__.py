"""``bellad bench``: what a person waits for, and what the device pays.

The benchmark runs the real daemon (``bellad run`` as a subprocess) on real
recordings fed in real time, through a real PulseAudio capture device (or a
file source paced in real time where PulseAudio is missing), publishing to a
real Mosquitto broker that a real MQTT subscriber listens to. It measures:

* the idle cost: the daemon's CPU time while it hears silence and steady room
  noise, as % of one core;
* the latency a person feels: from the true end of speech in the input to the
  transcript at the subscriber, split by stage;
* the model-only time of the same utterances through faster-whisper alone,
  and so the pipeline's overhead;
* the real-time factor by utterance length, padded and trimmed encoder input;
* behaviour under continuous speech (backlog, drops);
* peak resident memory and the time from start to ready.

Each figure is printed beside its target (:data:`bellad.benchmark.figures.TARGETS`).
``bellad bench --wer DIR`` measures word error rates with a real model instead.
"""
