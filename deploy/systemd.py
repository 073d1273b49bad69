"""Write systemd units from the Procfile: one service per process, and a target that starts them all.

    python deploy/systemd.py --home /srv/faultline --venv /srv/faultline/.venv --out /etc/systemd/system

(`make systemd` runs it.) Each unit runs its Procfile line exactly, through /bin/sh so the line's
`${HOST:-127.0.0.1}` defaults work, with the venv's bin first on PATH (the Procfile says
`python`), the settings from an environment file, and `Restart=always`: systemd starts a
process that exits again after RestartSec, however often (StartLimitIntervalSec=0), as
`make run`'s supervisor does on a laptop. Stopping sends SIGTERM to the main process, which
drains (gunicorn, Celery's warm shutdown, the relay), and SIGKILL to what is left after
TimeoutStopSec (KillMode=mixed).

Standard library only, and no Django: it runs before the environment file exists.
"""

import argparse
import re
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
DEFAULTS = {"home": "/srv/faultline", "venv": "/srv/faultline/.venv", "user": "faultline",
            "env_file": "/etc/faultline/faultline.env"}  # fmt: skip
PREFIX = "faultline"
GENERATED = "# Generated from the Procfile by deploy/systemd.py (make systemd): change the Procfile and generate again."
# What each process needs running first on the same machine, when it is there (Debian's unit names).
AFTER = "network-online.target postgresql.service redis-server.service"


def read_procfile(path: Path) -> dict[str, str]:
    """{name: command} from a Procfile: `name: command` lines; blank lines and # comments skipped."""
    processes = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        found = re.match(r"^([A-Za-z0-9_-]+):\s*(.+)$", line)
        if not found:
            raise SystemExit(f"{path}:{number}: not a `name: command` line: {line!r}")
        processes[found.group(1)] = found.group(2).strip()
    return processes


def exec_start(command: str) -> str:
    """The ExecStart value that runs `command` through /bin/sh as written.

    systemd expands `%` specifiers and `$VAR` itself, so both are doubled to reach the shell
    unchanged; inside systemd's double quotes a backslash and a double quote are escaped."""
    escaped = command.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    return f'/bin/sh -c "exec {escaped}"'


def service(name: str, command: str, home: str, venv: str, user: str, env_file: str) -> str:
    extra = []
    if name == "web":
        # gunicorn's workers count requests in files here for /metrics (config/gunicorn.py); systemd
        # makes it empty at each start and removes it at each stop.
        extra = [f"RuntimeDirectory={PREFIX}-web", f"Environment=PROMETHEUS_MULTIPROC_DIR=/run/{PREFIX}-web"]
    lines = [
        GENERATED,
        "[Unit]",
        f"Description=Faultline {name}",
        f"After={AFTER}",
        "Wants=network-online.target",
        f"PartOf={PREFIX}.target",
        "StartLimitIntervalSec=0",
        "",
        "[Service]",
        "Type=simple",
        f"User={user}",
        f"Group={user}",
        f"WorkingDirectory={home}",
        f"EnvironmentFile={env_file}",
        f"Environment=PATH={venv}/bin:/usr/local/bin:/usr/bin:/bin",
        "Environment=PYTHONUNBUFFERED=1",
        *extra,
        f"ExecStart={exec_start(command)}",
        "Restart=always",
        "RestartSec=2",
        "KillMode=mixed",
        "TimeoutStopSec=20",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "ProtectSystem=full",
        "",
        "[Install]",
        f"WantedBy={PREFIX}.target",
    ]
    return "\n".join(lines) + "\n"


def target(names: list[str]) -> str:
    wants = " ".join(f"{PREFIX}-{name}.service" for name in names)
    return "\n".join([
        GENERATED,
        "[Unit]",
        "Description=Faultline: every process of the Procfile",
        f"Wants={wants}",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
    ]) + "\n"  # fmt: skip


def units(procfile: Path, home: str, venv: str, user: str, env_file: str) -> dict[str, str]:
    """{file name: contents} for every unit."""
    processes = read_procfile(procfile)
    found = {f"{PREFIX}-{name}.service": service(name, command, home, venv, user, env_file) for name, command in processes.items()}
    found[f"{PREFIX}.target"] = target(list(processes))
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--procfile", type=Path, default=BASE_DIR / "Procfile")
    parser.add_argument("--home", default=DEFAULTS["home"], help="the checkout the processes run in (%(default)s)")
    parser.add_argument("--venv", default=DEFAULTS["venv"], help="the virtualenv with Faultline installed (%(default)s)")
    parser.add_argument("--user", default=DEFAULTS["user"], help="the system user the processes run as (%(default)s)")
    parser.add_argument("--env-file", default=DEFAULTS["env_file"], help="the settings, one VAR=value a line (%(default)s)")
    parser.add_argument("--out", type=Path, default=BASE_DIR / "deploy" / "systemd", help="where to write the units (%(default)s)")
    args = parser.parse_args(argv)
    for path, value in (("--home", args.home), ("--venv", args.venv), ("--env-file", args.env_file)):
        if not value.startswith("/"):
            parser.error(f"{path} must be an absolute path (systemd needs one), not {value!r}")
    args.out.mkdir(parents=True, exist_ok=True)
    written = units(args.procfile, args.home, args.venv, args.user, args.env_file)
    for stale in args.out.glob(f"{PREFIX}*"):  # a process removed from the Procfile loses its unit
        if stale.name not in written and stale.read_text().startswith(GENERATED):
            stale.unlink()
    for name, text in written.items():
        (args.out / name).write_text(text)
    print(f"wrote {', '.join(sorted(written))} to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
