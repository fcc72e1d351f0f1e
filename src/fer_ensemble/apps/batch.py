"""``fer-ensemble batch INPUT... --out DIR``: photo and video collections to Parquet, on Ray Data
(local, or a cluster with ``--ray-address``) or on a local process pool (``--engine local``)."""

from __future__ import annotations

import argparse
import importlib.util
import os
import time
from collections import defaultdict
from pathlib import Path

from tqdm import tqdm

from fer_ensemble import __version__
from fer_ensemble.apps.common import (
    add_detector_arguments,
    add_ensemble_arguments,
    add_profile_argument,
    bounded,
    detector_options_of,
    warn,
)
from fer_ensemble.apps.exits import add_exit_arguments, exit_code
from fer_ensemble.errors import ExitCode, Interrupted, UserError
from fer_ensemble.media.inputs import is_uri
from fer_ensemble.outputs import (
    check_apart,
    check_manifest,
    check_output_folder,
    output_folder,
    recorded_args,
    write_manifest,
)

NOTHING_THERE = "no photo or video there"
"""The error of an input that names nothing, or a folder, glob or manifest that holds no source."""


def add_batch_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="photos, videos, folders, globs, URIs fsspec reads (s3://..., gs://...) or a "
                             "manifest (.csv / .parquet with a path column)")
    parser.add_argument("--out", required=True,
                        help="output folder (faces/, sources/, summary.parquet): never one that is or holds an input")
    parser.add_argument("--engine", choices=("ray", "local"), default="ray",
                        help="Ray Data (default; needs the batch extra) or a local process pool")
    parser.add_argument("--ray-address", default=None,
                        help="Ray cluster: 'auto' or ray://HOST:10001 (default: a local Ray on this machine)")
    parser.add_argument("--num-workers", type=bounded(int, 1), default=os.cpu_count() or 1,
                        help="recognizers working at once, one CPU each (default: the CPU count, %(default)s)")
    parser.add_argument("--stride", type=bounded(int, 1), default=1, help="videos: every Nth frame")
    parser.add_argument("--no-track", action="store_true",
                        help="videos: no track ids or smoothing; frames are independent, so a long video "
                             "is split into ranges of --chunk-frames across the workers")
    parser.add_argument("--chunk-frames", type=bounded(int, 1), default=300, help="with --no-track (default 300)")
    parser.add_argument("--auto-resting-face", action="store_true",
                        help="videos: each track takes its resting face from its calm frames, as video's option "
                             "(not with --no-track)")
    parser.add_argument("--manifest-column", default="path", help="the path column of a manifest")
    parser.add_argument("--overwrite", action="store_true", help="redo sources whose output exists")
    parser.add_argument("--no-progress", action="store_true")
    add_ensemble_arguments(parser)
    add_profile_argument(parser)
    parser.add_argument("--geometry", action="store_true",
                        help="also each face's head pose, 'turned' flag and 51 blendshapes in its rows "
                             "(MediaPipe's models, about 20 ms a face; docs/batch.md)")
    add_detector_arguments(parser, still=True)  # photos; videos use the detector's live preset, as `video` does
    add_exit_arguments(parser)
    return parser


def batch_settings(args: argparse.Namespace):
    from fer_ensemble.batch.work import BatchSettings
    from fer_ensemble.runtime.detectors import live_settings

    if args.auto_resting_face and args.no_track:
        raise UserError("--auto-resting-face needs tracks: leave out --no-track")
    return BatchSettings(ensemble=args.ensemble, prior_strength=args.prior, stride=args.stride, track=not args.no_track,
                         auto_resting_face=args.auto_resting_face, calibration=args.calibration,
                         photo_detector=detector_options_of(args).to_dict(defaults=False), video_detector=live_settings(detector_options_of(args)),
                         profile=args.profile, geometry=args.geometry or None)


SETTING_NAMES = {"version": "the fer-ensemble version", "ensemble": "--ensemble", "prior": "--prior",
                 "calibration": "--calibration", "stride": "--stride", "track": "--no-track",
                 "ema_weight": "the smoothing", "auto_resting_face": "--auto-resting-face",
                 "photo_detector": "the detector options", "video_detector": "the detector options",
                 "profile": "--profile", "geometry": "--geometry"}
"""How the closing notes name each key of ``work.recorded_settings``."""


def sources_settings(sources: list[str], settings) -> dict[str, dict]:
    """Per source, the settings its summary records (``work.recorded_settings`` for its kind)."""
    from fer_ensemble.batch.plan import kind_of
    from fer_ensemble.batch.work import for_kind, recorded_settings

    record = recorded_settings(settings, __version__)
    return {source: for_kind(record, kind_of(source) or "image") for source in sources}


def sources_to_do(output, wanted: dict[str, dict], args: argparse.Namespace) -> list[str]:
    """The sources of ``wanted`` to read: all with ``--overwrite``, else those not done under their
    settings (``BatchOutput.done``), saying how many are skipped and which settings changed for
    those done under others."""
    if args.overwrite:
        return list(wanted)
    todo = [source for source, settings in wanted.items() if not output.done(source, settings)]
    if len(todo) < len(wanted):
        warn(f"{len(wanted) - len(todo)} source(s) already done in {args.out} (--overwrite redoes them)")
    changed = [output.changed(source, wanted[source]) for source in todo]
    if redone := sum(map(bool, changed)):
        names = dict.fromkeys(SETTING_NAMES[key] for keys in changed for key in keys)
        warn(f"{redone} source(s) in {args.out} were made under other settings ({', '.join(names)}): "
             "reading them again")
    return todo


def run_batch(args: argparse.Namespace) -> int:
    from fer_ensemble.batch.engines import run_local, run_ray
    from fer_ensemble.batch.output import BatchOutput
    from fer_ensemble.batch.plan import batch_inputs, plan_tasks
    from fer_ensemble.runtime.ensemble import check_ensemble_file, load_calibration
    from fer_ensemble.runtime.recognizer import SHIPPED_ENSEMBLE

    settings = batch_settings(args)  # its usage errors before any input is scanned or folder made
    check_output_folder(args.out)
    check_ensemble_file(args.ensemble or SHIPPED_ENSEMBLE)  # here, as one line, not once per worker
    if args.calibration is not None:
        load_calibration(args.calibration)  # the same
    if args.profile is not None:  # the same: a damaged or foreign profile is one line here
        from fer_ensemble.runtime.profile import Profile
        from fer_ensemble.runtime.recognizer import load_ensemble

        load_ensemble(args.ensemble).check_profile(Profile.load(args.profile))
    import pyarrow.parquet  # noqa: F401 - the batch extra, for either engine: named before any folder is made
    if args.engine == "ray":
        if not args.verbose:  # a process setting, so here, before Ray loads: Ray Data's plans and timings
            os.environ.setdefault("RAY_DATA_LOG_LEVEL", "ERROR")
        import ray  # noqa: F401 - the batch extra; a missing one is named by the command line
    if args.ray_address and args.engine != "ray":
        raise UserError("--ray-address needs --engine ray")
    if (args.ray_address or "").startswith("ray://"):
        if importlib.util.find_spec("grpc") is None:  # what ray[client] adds, and Ray's client imports first
            raise UserError(f"--ray-address {args.ray_address} connects through Ray's client, which is not "
                            "installed: pip install 'fer-ensemble[cloud]' (ray[client])")
    cores = os.cpu_count() or 1
    if args.engine == "ray" and args.ray_address is None and args.num_workers > cores:
        warn(f"a local Ray has {cores} CPU(s): {cores} worker(s), not {args.num_workers} "
             "(each actor takes one; more would wait for ever)")
        args.num_workers = cores
    inputs = batch_inputs(args.inputs, args.manifest_column, exclude=Path(args.out))
    local = [item for item in [*inputs.sources, *args.inputs] if not is_uri(item) and Path(item).is_file()]
    check_apart(args.out, args.inputs, local, "photos or videos")  # manifests included
    check_manifest(args.out, "batch")  # another command's folder, or a file of that name not ours: refused
    sources, missing = inputs.sources, inputs.missing + inputs.empty
    for item in missing:
        warn(f"{item}: {NOTHING_THERE}")
    if note := inputs.describe_skipped():
        warn(note)
    if not sources:  # nothing to do: no output folder made
        warn(f"no photo or video among the inputs: {len(missing)} failed, nothing written to {args.out}")
        return ExitCode.INPUT_FAILED
    output = BatchOutput(output_folder(args.out), geometry=args.geometry)
    write_manifest(output.folder, "batch", recorded_args(args), __version__)  # each source's summary has its own
    for item in missing:  # a row each, as a source that cannot be read has
        output.write_failure(item, NOTHING_THERE)
    wanted = sources_settings(sources, settings)
    todo = sources_to_do(output, wanted, args)
    tasks = plan_tasks(todo, args.chunk_frames, track=not args.no_track)
    started = time.perf_counter()
    pending: defaultdict[str, int] = defaultdict(int)  # source -> its tasks not yet collected
    for task in tasks:
        pending[task.source] += 1
    collected: dict[str, dict] = defaultdict(lambda: {"rows": [], "read": 0, "processed": 0, "fps": None,
                                                      "errors": []})
    results = (run_ray(tasks, settings, args.num_workers, args.ray_address, args.verbose) if args.engine == "ray"
               else run_local(tasks, settings, args.num_workers))
    failed = faces = frames = written = 0
    try:
        with tqdm(total=len(tasks), unit="task", disable=True if args.no_progress else None, desc="batch") as bar:
            for index, result in results:
                task = tasks[index]
                done = collected[task.source]
                done["rows"] += result.rows
                done["read"] += result.frames_read
                done["processed"] += result.frames_processed
                done["fps"] = done["fps"] or result.fps
                if result.error:
                    done["errors"].append(result.error if task.start == 0 else f"frames {task.start}-: {result.error}")
                pending[task.source] -= 1
                if pending[task.source] == 0:  # every range of this source is in: write it
                    summary = output.write_source(task.source, task.kind, done["rows"], done["read"],
                                                  done["processed"], done["fps"], done["errors"], wanted[task.source])
                    written += 1
                    failed += summary["error"] is not None
                    faces += summary["faces"]
                    frames += summary["frames_processed"]
                    if summary["error"]:
                        warn(f"{task.source}: {summary['error']}")
                    del collected[task.source]
                bar.update(1)
    except KeyboardInterrupt:  # Ctrl-C: the workers stop now; what is written stays, and a rerun goes on
        results.close()
        output.write_summary([*sources, *missing])
        # counted on disk (failed sources too): Ctrl-C may land between a summary's rename and the count above
        written = sum((output.summary(source) or {}).get("settings") == wanted[source] for source in todo)
        raise Interrupted(f"{written} of {len(todo)} source(s) done, outputs in {args.out} "
                          "(the same command goes on from there)") from None
    summary_path = output.write_summary([*sources, *missing])
    seconds = time.perf_counter() - started
    warn(f"{len(todo)} source(s) in {seconds:.1f} s ({frames / max(seconds, 1e-9):.1f} frames/s, "
         f"{args.engine}, {args.num_workers} worker(s)): {frames} frame(s), {faces} face(s), "
         f"{failed + len(missing)} failed; "
         f"{summary_path}")
    earlier = sum(output.summary(s).get("faces", 0) for s in sources if s not in todo)
    return exit_code(failed=bool(failed or missing), found=faces + earlier > 0, args=args)
