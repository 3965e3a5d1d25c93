"""`app`: the Streamlit app started with its settings from any folder, its trainer beside it. What the operator
shares with browsers (--share, --export-to, --tracking-uri, --teacher-code, --max-model-size, --model-file) goes
to the server and the trainer as their settings, in the environment built here and handed to each; this
process's own is left as it is."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from core.cli.common import positive_float
from core.execution import trainer_client
from core.models import own
from core.runtime import paths, shares
from core.runtime.device import all_cores_but_one
from core.runtime.settings import settings

APP = Path(__file__).resolve().parents[2] / "streamlit_app.py"  # in a checkout, or installed beside `core`
# The app's Streamlit settings: beside the entry script in a checkout, inside `ui` once installed (pyproject).
SETTINGS = (APP.parent / ".streamlit" / "config.toml", APP.parent / "ui" / "streamlit_settings" / "config.toml")


def streamlit_settings() -> list[str]:
    """The app's Streamlit settings (localhost only, upload bound, no error details in the browser, ...) as
    `streamlit run` flags: they apply from whatever folder the app starts, where Streamlit would read only that
    folder's .streamlit/config.toml."""
    import tomllib

    path = next((p for p in SETTINGS if p.is_file()), None)
    if path is None:
        raise FileNotFoundError(f"FreezeLab's Streamlit settings are missing (neither {SETTINGS[0]} nor "
                                f"{SETTINGS[1]}): reinstall FreezeLab.")

    def flags(table: dict, prefix: str) -> list[str]:
        out = []
        for key, value in table.items():
            if isinstance(value, dict):
                out += flags(value, f"{prefix}{key}.")
            else:
                out.append(f"--{prefix}{key}={str(value).lower() if isinstance(value, bool) else value}")
        return out

    return flags(tomllib.loads(path.read_text()), "")


def child_environment(args: argparse.Namespace) -> dict[str, str]:
    """The environment the app's server and trainer start with: this process's, its settings extended by what
    the flags share (beside what the settings share already) and name (the teacher's code, the model size
    limit, the operator's own networks)."""
    now = settings()
    given = dataclasses.replace(
        now,
        share=(*now.share, *(Path(v).expanduser().resolve() for v in args.share)),
        export_to=(*now.export_to, *(Path(v).expanduser().resolve() for v in args.export_to)),
        tracking_uris=(*now.tracking_uris, *args.tracking_uri),
        teacher_code=args.teacher_code or now.teacher_code,
        max_model_m=now.max_model_m if args.max_model_size is None else args.max_model_size,
        model_files=own.SEPARATOR.join(filter(None, [now.model_files, *map(own.resolved, args.model_file)])))
    return {**os.environ, **given.to_environ()}


def cmd_app(args: argparse.Namespace) -> int:
    """Start the Streamlit app, with its settings, from any folder; the trainer starts beside it."""
    if not APP.is_file():
        print(f"The app's files are not beside this package ({APP} is missing): reinstall FreezeLab "
              "(`pip install .` in its folder).", file=sys.stderr)
        return 2
    try:
        settings = streamlit_settings()
    except FileNotFoundError as err:
        print(err, file=sys.stderr)
        return 2
    env = child_environment(args)
    if trainer_client.in_own_process():  # it imports torch and builds the demo's runs while streamlit starts
        trainer_client.spawn_orphan(paths.home(), all_cores_but_one(), warm_up=True, env=env)
    command = [sys.executable, "-m", "streamlit", "run", str(APP), *settings, *args.streamlit_args]  # the user's last
    os.execve(sys.executable, command, env)  # the app becomes this process: Ctrl-C and signals reach it
    return 0  # not reached


def add_parsers(sub, prog: str) -> None:
    p = sub.add_parser("app", help="start the Streamlit app; further arguments go to `streamlit run` "
                                   "(--server.address 0.0.0.0 shares it on a network)")
    p.add_argument("--share", action="append", default=[], metavar="DIR",
                   help="a folder browsers may read images and weights files from (repeatable; besides "
                        "$FREEZELAB_HOME/data and uploads)")
    p.add_argument("--export-to", action="append", default=[], metavar="DIR",
                   help="a folder browsers may export runs into (repeatable; besides $FREEZELAB_HOME)")
    p.add_argument("--tracking-uri", action="append", default=[], metavar="URI",
                   help="an MLflow tracking URI browsers may export runs to (repeatable; none by default)")
    p.add_argument("--teacher-code", metavar="CODE", help="a code that makes a browser the lesson's teacher: it "
                   "sees the class's predictions and results (no teacher view without one)")
    p.add_argument("--model-file", action="append", default=[], metavar="FILE.py:FUNCTION",
                   help="your own network, offered to every browser as a backbone (repeatable); a browser can "
                        "never name code to run")
    p.add_argument("--max-model-size", type=positive_float, metavar="MILLIONS",
                   help="the largest torchvision or timm model a browser may build, in millions of parameters "
                        f"(default: ${{{shares.MAX_MODEL_ENV}}}, else {shares.DEFAULT_MAX_MODEL_M:.0f})")
    p.set_defaults(func=cmd_app, passes_on_the_rest=True)  # streamlit's own flags (--server.port 8502)
