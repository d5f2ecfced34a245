"""`python -m benchmarks speech`: the offline speech stand-ins on phone audio.

The set: the lines of tests/data/speech_utterances.yaml, each spoken by both offline voices
(Piper without sampling noise, espeak-ng) and converted to 8 kHz mu-law as the phone network
carries it; both voices are deterministic, so the audio is made here from the text.

- Word error rate: every utterance (300 ms of silence before, 1 s after) through the Whisper
  and the pocketsphinx transcriber, streamed in 20 ms frames; the final transcripts against the
  text, both lower-cased and without punctuation (jiwer).
- Final latency: utterances streamed in real time (a frame every 20 ms on a monotonic
  schedule); the time from the end of the speech (its last non-silent frame sent) to the final
  transcript. It includes the 500 ms of silence that end a turn.
- CPU per live call: the process's CPU time over those real-time streams (the caller speaking
  about half the time), as a share of one core; and the voice's CPU per second of speech.
- Voice: time to the first audio chunk of each line's first piece as the call loop's chunker
  cuts it (what the caller waits for once the model wrote it), and the real-time factor of
  the whole line (synthesis time / audio length).
- Memory: a fresh process's resident memory (VmRSS) before and after loading both models and
  serving a line each, as the voice service holds them.
"""

from __future__ import annotations

import asyncio
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

from talkturo.audio import FRAME_BYTES, frames, is_silent, silence
from talkturo.simcaller.audio import espeak_available, speak
from talkturo.voice.chunker import Chunker
from talkturo.voice.providers.base import TranscriberOptions, Transcript, VoiceOptions
from talkturo.voice.providers.stt import whisper
from talkturo.voice.providers.stt.offline import PocketsphinxTranscriber
from talkturo.voice.providers.stt.segments import SegmentedStream
from talkturo.voice.providers.tts import piper
from talkturo.voice.providers.tts.offline import EspeakSynthesizer
from talkturo.voice.providers.tts.piper import PiperSynthesizer

UTTERANCES = Path(__file__).resolve().parent.parent / "tests" / "data" / "speech_utterances.yaml"
OPTIONS = TranscriberOptions(model="offline", language="en-US")
LATENCY_UTTERANCES = 20  # per voice, streamed in real time
FRAME_SECONDS = 0.02


def lines() -> list[str]:
    return [str(line) for line in yaml.safe_load(UTTERANCES.read_text())]


def normalised(text: str) -> str:
    return " ".join(re.sub(r"[^a-z' ]+", " ", text.lower()).split())


def trimmed(audio: bytes) -> bytes:
    kept = frames(audio)
    while kept and is_silent(kept[-1]):
        kept.pop()
    return b"".join(kept)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def _final(stream: SegmentedStream, audio: bytes) -> str:
    finals: list[str] = []

    async def collect() -> None:
        async for event in stream.events():
            if isinstance(event, Transcript) and event.final:
                finals.append(event.text)

    task = asyncio.create_task(collect())
    for start in range(0, len(audio), FRAME_BYTES):
        await stream.send(audio[start : start + FRAME_BYTES])
    await stream.close()
    await task
    return " ".join(finals)


async def transcribe_all(engine: str, audios: list[bytes]) -> list[str]:
    transcriber = whisper.WhisperTranscriber() if engine == "whisper" else PocketsphinxTranscriber()
    out = []
    for audio in audios:
        stream = await transcriber.open(OPTIONS)
        assert isinstance(stream, SegmentedStream)
        out.append(await _final(stream, silence(0.3) + audio + silence(1.0)))
    return out


async def real_time_latency(audio: bytes) -> float:
    """Seconds from the end of speech to the final transcript, streamed in real time."""
    stream = await whisper.WhisperTranscriber().open(OPTIONS)
    final_at: list[float] = []

    async def collect() -> None:
        async for event in stream.events():
            if isinstance(event, Transcript) and event.final and not final_at:
                final_at.append(time.perf_counter())

    task = asyncio.create_task(collect())
    speech_end = 0.0
    sent = silence(0.3) + audio
    whole = sent + silence(1.5)
    began = time.perf_counter()
    for index, start in enumerate(range(0, len(whole), FRAME_BYTES)):
        due = began + index * FRAME_SECONDS
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        await stream.send(whole[start : start + FRAME_BYTES])
        if start + FRAME_BYTES == len(sent) - len(sent) % FRAME_BYTES:
            speech_end = time.perf_counter()
    await stream.close()
    await task
    return final_at[0] - speech_end if final_at else float("nan")


async def first_audio(
    voice: PiperSynthesizer | EspeakSynthesizer, text: str
) -> tuple[float, float, float]:
    """(seconds to the first chunk, seconds to the last, seconds of audio)."""
    began = time.perf_counter()
    first, size = 0.0, 0
    async for chunk in voice.synthesize(text):
        if not size:
            first = time.perf_counter() - began
        size += len(chunk)
    return first, time.perf_counter() - began, size / 8000


MEMORY_CHILD = """
import re
def rss():
    return int(re.search(r"VmRSS:\\s+(\\d+)", open("/proc/self/status").read())[1]) / 1024
import talkturo.voice.server  # the service's own imports
before = rss()
from talkturo.voice.providers.stt import whisper
from talkturo.voice.providers.tts import piper
audio = piper.speak("Hello, I would like to book a table for tomorrow evening.")
whisper.transcribe(audio)
print(f"{before:.0f} {rss():.0f}")
"""


def memory() -> tuple[float, float]:
    done = subprocess.run(
        [sys.executable, "-c", MEMORY_CHILD],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    before, after = done.stdout.split()
    return float(before), float(after)


def run() -> None:
    import jiwer

    if not (whisper.available() and piper.available()):
        print("\nOffline speech: the `speech` extra is not installed (make installs it)")
        return
    texts = lines()
    voices = {"piper": lambda t: trimmed(piper.speak(t))}
    if espeak_available():
        voices["espeak-ng"] = lambda t: trimmed(speak(t, engine="espeak-ng").audio)
    print(f"\nOffline speech ({len(texts)} lines x {len(voices)} voices, 8 kHz mu-law)")
    whisper.load()
    piper.load()

    print("  word error rate   | Whisper tiny.en | pocketsphinx")
    all_refs: list[str] = []
    all_hyps: dict[str, list[str]] = {"whisper": [], "pocketsphinx": []}
    audios_by_voice: dict[str, list[bytes]] = {}
    for name, make in voices.items():
        audios = [make(text) for text in texts]
        audios_by_voice[name] = audios
        refs = [normalised(t) for t in texts]
        row = []
        for engine in ("whisper", "pocketsphinx"):
            hyps = [normalised(h) for h in asyncio.run(transcribe_all(engine, audios))]
            all_hyps[engine] += hyps
            row.append(jiwer.wer(refs, hyps))
        all_refs += refs
        print(f"  {name:<17} | {row[0]:>14.1%} | {row[1]:>11.1%}")
    both = [jiwer.wer(all_refs, all_hyps[e]) for e in ("whisper", "pocketsphinx")]
    print(f"  {'both voices':<17} | {both[0]:>14.1%} | {both[1]:>11.1%}")

    latencies: list[float] = []
    cpu_began, wall_began = time.process_time(), time.perf_counter()
    for audios in audios_by_voice.values():
        for audio in audios[:LATENCY_UTTERANCES]:
            latencies.append(asyncio.run(real_time_latency(audio)))
    cpu_share = (time.process_time() - cpu_began) / (time.perf_counter() - wall_began)
    print(
        f"  Whisper final after the end of speech, real time ({len(latencies)} lines): "
        f"p50 {percentile(latencies, 0.5) * 1000:.0f} ms, "
        f"p95 {percentile(latencies, 0.95) * 1000:.0f} ms"
    )
    print(
        f"  Whisper CPU per live call (caller speaking ~half the time): {cpu_share:.0%} of a core"
    )

    print("  voice             | first audio p50 | p95     | real-time factor")
    options = VoiceOptions(model="", voice_id="", language="en-US")
    for name, voice in (
        ("piper", PiperSynthesizer(options)),
        ("espeak-ng", EspeakSynthesizer(options)),
    ):
        if name == "espeak-ng" and not espeak_available():
            continue
        firsts, factors = [], []
        cpu_began = time.process_time()
        spoken = 0.0
        for text in texts:
            chunker = Chunker()
            pieces = [*chunker.feed(text), *chunker.flush()]
            firsts.append(asyncio.run(first_audio(voice, pieces[0]))[0])
            _, total, seconds = asyncio.run(first_audio(voice, text))
            factors.append(total / seconds)
            spoken += seconds
        cpu = time.process_time() - cpu_began
        print(
            f"  {name:<17} | {percentile(firsts, 0.5) * 1000:>12.0f} ms | "
            f"{percentile(firsts, 0.95) * 1000:>4.0f} ms | {statistics.median(factors):.3f}"
            + (f" (CPU {cpu / spoken:.2f} s per second of speech)" if name == "piper" else "")
        )
    before, after = memory()
    print(
        f"  memory: voice service process {before:.0f} MB before the models, "
        f"{after:.0f} MB with Whisper and Piper loaded"
    )


if __name__ == "__main__":
    run()
