"""`python -m vision_pipeline_tests.ui_screenshot OUT.png` (`make ui-screenshot`): the asset page, as the README shows it.

Uses the instance the CLI uses ($VISION_PIPELINE_HOME / $DAGSTER_HOME, as `vision-pipeline demo` left it)
when it already has a `trained_checkpoint` materialisation. Otherwise it materialises the pipeline in a
throwaway home (tiny config; `--recipe` for the default recipe), or in `--home DIR` when given. Then it
starts dagster-webserver on that instance, opens the asset page in headless Chromium (Debian's
``chromium``), clicks away the first-visit "Join the Dagster community" dialog, checks that the ClearML
link and the metrics are on the page and saves the screenshot.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from vision_pipeline import settings
from vision_pipeline_tests import ui_harness as h

METRIC_LABELS = ("mAP50", "mAP50-95", "precision", "recall")


def _say(message: str) -> None:
    print(f"[ui-screenshot] {message}", flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m vision_pipeline_tests.ui_screenshot", description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="PNG to write (e.g. docs/img/asset-page.png)")
    parser.add_argument("--home", type=Path, help="project home to use (materialised there when it is not yet)")
    parser.add_argument("--recipe", action="store_true", help="materialise with the default recipe, not the tiny config")
    parser.add_argument("--asset", default="trained_checkpoint")
    parser.add_argument("--width", type=int, default=1600)
    parser.add_argument("--height", type=int, default=1400)
    parser.add_argument("--keep", action="store_true", help="keep a throwaway home (prints where)")
    return parser.parse_args(argv)


def _latest(dagster_home: Path, asset: str) -> dict | None:
    """Metadata of the latest materialisation of ``asset`` on the instance in ``dagster_home`` (None: never)."""
    import dagster as dg

    if not (dagster_home / "dagster.yaml").exists():
        return None
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey(asset))
        if event is None or event.asset_materialization is None:
            return None
        return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def _materialise(vp_home: Path, dagster_home: Path, env: dict[str, str], recipe: bool) -> None:
    """The whole retrain_job in this process on the given homes (the definitions read the environment)."""
    import dagster as dg

    os.environ.clear()
    os.environ.update(env)
    from vision_pipeline.definitions import defs

    run_config = None if recipe else h.TINY_RUN_CONFIG
    _say(f"materialising retrain_job ({'default recipe' if recipe else 'tiny config'}) in {vp_home}")
    started = time.monotonic()
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        result = defs.resolve_job_def(h.JOB).execute_in_process(
            instance=instance, run_config=run_config, raise_on_error=False, tags={"launched_by": "ui_screenshot"},
        )
    if not result.success:
        raise SystemExit(f"retrain_job failed (run {result.run_id}); see the log above")
    _say(f"materialised in {time.monotonic() - started:.0f} s")


def capture(url: str, out: Path, *, asset: str, width: int, height: int, expect: list[str]) -> str:
    """Open ``url``, wait for ``expect`` texts, click the community dialog away, screenshot; returns the page text."""
    with h.HeadlessChromium(width=width, height=height) as browser:
        browser.navigate(url)
        browser.wait_for(lambda t: all(e in t for e in expect), timeout_s=180)
        clicked = h.dismiss_community_dialog(browser, timeout_s=8)
        _say("community dialog: " + ("clicked Skip" if clicked else "did not appear"))
        text = browser.text()
        if h.COMMUNITY_DIALOG_TITLE in text:
            raise SystemExit("the community dialog is still covering the page")
        missing = [e for e in expect if e not in text]
        if missing:
            raise SystemExit(f"not on the {asset} page: {missing}")
        time.sleep(1.5)  # let the last layout/fonts settle
        browser.screenshot(out)
    return text


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = args.out.resolve()
    throwaway: Path | None = None
    base_env = {k: v for k, v in os.environ.items()}

    if args.home:
        vp_home = args.home.expanduser().resolve()
        dagster_home = h.prepare_instance(vp_home / "dagster")
        env = h.isolated_env(vp_home, dagster_home, base=base_env, drop=("DAGSTER_HOME",))
    else:
        raw = os.environ.get("VISION_PIPELINE_HOME")
        vp_home = (Path(raw).expanduser() if raw else settings.PROJECT_ROOT / ".vision_pipeline").resolve()
        dagster_home = Path(os.environ.get("DAGSTER_HOME") or vp_home / "dagster").expanduser().resolve()
        env = h.isolated_env(vp_home, dagster_home, base=base_env, drop=())
        if _latest(dagster_home, args.asset) is None:
            throwaway = Path(tempfile.mkdtemp(prefix="vision-pipeline-ui-"))
            _say(f"{dagster_home} has no '{args.asset}' materialisation: using a throwaway home {throwaway}")
            vp_home = throwaway / "vp_home"
            dagster_home = h.prepare_instance(vp_home / "dagster")
            env = h.isolated_env(vp_home, dagster_home, base=base_env)  # no real servers for a throwaway

    try:
        if _latest(dagster_home, args.asset) is None:
            _materialise(vp_home, dagster_home, env, args.recipe)
        metadata = _latest(dagster_home, args.asset) or {}
        clearml_url = metadata.get("clearml_task_url")
        expect = ["clearml_task_url"] + [m for m in METRIC_LABELS if m in metadata]
        if clearml_url:
            expect.append(str(clearml_url))
        _say(f"instance {dagster_home}")
        with h.DagsterUI(dagster_home=dagster_home, env=env, daemon=False, log_dir=vp_home / "ui-logs") as ui:
            _say(f"webserver up at {ui.url} in {ui.startup_seconds:.0f} s")
            started = time.monotonic()
            capture(f"{ui.url}/assets/{args.asset}", out, asset=args.asset, width=args.width, height=args.height,
                    expect=expect)
            _say(f"page captured in {time.monotonic() - started:.0f} s")
        shown = ", ".join(f"{m} {metadata[m]:.3f}" for m in METRIC_LABELS if isinstance(metadata.get(m), float))
        _say(f"wrote {out}: {args.asset} with ClearML link {clearml_url} and {shown}")
    finally:
        if throwaway is not None:
            if args.keep:
                _say(f"kept {throwaway}")
            else:
                shutil.rmtree(throwaway, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
