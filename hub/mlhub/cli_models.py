"""``mlhub models ...``: publish and manage models from a terminal.

``mlhub.cli`` registers these with ``add_models_parser(subparsers)`` and runs them with
``run_models(args)`` (also set as the parser's ``func`` default). They talk to the publisher's
REST API through ``mlhub.publisher.client.PublisherClient``: the hub URL comes from ``--url`` or
``$MLHUB_URL`` (default ``http://127.0.0.1:8000``), the token from ``--token``, ``$MLHUB_TOKEN``
or ``$JUPYTERHUB_API_TOKEN``. A model is named ``user/name`` or just ``name`` (your own).
Progress goes to stderr, results to stdout, so output can be piped.
"""

import json
import sys
import time

from mlhub.errors import MlhubError
from mlhub.publisher.client import PublisherClient
from mlhub.steps import DEFAULT_ALIAS


def add_models_parser(subparsers):
    """Add the ``models`` command (with its subcommands) to an argparse ``subparsers``."""
    models = subparsers.add_parser(
        "models",
        help="publish and manage models",
        description="Publish models as authenticated REST endpoints and manage them.",
    )
    models.add_argument("--url", help="mlhub URL (default: $MLHUB_URL or http://127.0.0.1:8000)")
    models.add_argument(
        "--token", help="JupyterHub token (default: $MLHUB_TOKEN or $JUPYTERHUB_API_TOKEN)"
    )
    models.set_defaults(func=run_models)
    sub = models.add_subparsers(dest="models_command", metavar="COMMAND", required=True)

    p = sub.add_parser("list", help="list your models (admins: --user or everyone's)")
    p.add_argument("--user", help="list this user's models (admins)")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser("show", help="show a model, its versions and its URL")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser("publish", help="publish a bundle or MLflow model directory")
    p.add_argument("path", metavar="PATH", help="bundle directory, MLflow model dir or .tar.gz")
    p.add_argument("--name", help="model name (default: the bundle's own)")
    p.add_argument("--workers", type=int, help="serving workers (replicas)")
    p.add_argument(
        "--batching",
        choices=("on", "off"),
        help="micro-batch concurrent requests into one model call (for models that "
        "vectorise); kept for later versions (default: the model's setting, off for a new one)",
    )
    p.add_argument("--batch-max-size", type=int, metavar="ROWS", help="most rows per batch (64)")
    p.add_argument(
        "--batch-max-wait-ms", type=int, metavar="MS", help="longest wait for a batch to fill (2)"
    )
    for flag, what in (
        ("--cpu", "CPU request per serving pod, e.g. 500m or 2 (Kubernetes mode only)"),
        ("--memory", "memory request per serving pod, e.g. 512Mi or 1Gi (Kubernetes mode only)"),
        ("--cpu-limit", "CPU limit per serving pod (embedded: per replica)"),
        ("--memory-limit", "memory limit per serving pod (embedded: per replica)"),
    ):
        p.add_argument(
            flag,
            metavar="QUANTITY",
            help=f"{what} (Kubernetes; kept for later versions, the hub's default if not given)",
        )
    p.add_argument(
        "--inference-log",
        metavar="on|off|FRACTION",
        help="keep what callers send and get: on (every request), off, or the fraction of "
        "requests to keep (0.1); kept for later versions (default: the model's setting)",
    )
    p.add_argument(
        "--sleep-after",
        metavar="SECONDS|never|default",
        help="release the model's processes after this many seconds without a request (the "
        "next request wakes it); never: keep it warm; kept for later versions",
    )
    p.add_argument(
        "--alias",
        help="go live at this alias, at .../NAME@ALIAS/ (default: production, the plain URL)",
    )
    p.add_argument("--no-wait", action="store_true", help="return once the upload is accepted")

    p = sub.add_parser("rollback", help="make an earlier version live again")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--version", default="previous", help="version id or 'previous' (default)")
    p.add_argument("--no-wait", action="store_true", help="return once the rollback is accepted")

    p = sub.add_parser(
        "alias",
        help="point an alias (production, staging, ...) at a version, or --delete it",
        description="Each alias serves its version at .../NAME@ALIAS/ (production also at "
        "the plain URL); moving one is a readiness-gated switch with no failed request.",
    )
    p.add_argument("name", metavar="NAME")
    p.add_argument("alias", metavar="ALIAS")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--version",
        help="a version id (or its first 8+ hex digits), 'previous', or another alias whose "
        "version it takes (mlhub models alias NAME production --version staging promotes)",
    )
    what.add_argument("--delete", action="store_true", help="remove it and stop its processes")
    p.add_argument("--no-wait", action="store_true", help="return once the move is accepted")

    p = sub.add_parser("aliases", help="list a model's aliases and the versions they serve")
    p.add_argument("name", metavar="NAME")

    p = sub.add_parser(
        "shadow",
        help="send a share of production's requests to another version too; compare; stop",
        description="With --version and --percent: the version starts in processes of its "
        "own, and that share of production's requests is sent to it as well, off the callers' "
        "path; its answers are kept beside production's and never returned. Without them: "
        "how the two versions' answers and latency compare.",
    )
    p.add_argument("name", metavar="NAME")
    p.add_argument("--version", help="a version id (or its first 8+ hex digits) or an alias")
    p.add_argument("--percent", type=float, help="the share of requests to shadow, e.g. 10")
    p.add_argument("--stop", action="store_true", help="stop the shadow")
    p.add_argument("--since", help="compare only rows since: a time or an age (15m, 2h)")
    p.add_argument("--no-wait", action="store_true", help="return once the change is accepted")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")

    p = sub.add_parser(
        "canary",
        help="send a share of production's requests to another version; show, promote, abort",
        description="With --version and --percent: the version starts in processes of its "
        "own, then takes that share of the plain URL's requests, chosen per request; a canary "
        "doing worse than production (errors, latency) is aborted by itself. Without them: "
        "how the canary and production compare.",
    )
    p.add_argument("name", metavar="NAME")
    p.add_argument("--version", help="a version id (or its first 8+ hex digits) or an alias")
    p.add_argument("--percent", type=float, help="its share of the requests, e.g. 20")
    end = p.add_mutually_exclusive_group()
    end.add_argument("--promote", action="store_true", help="make its version production's")
    end.add_argument("--abort", action="store_true", help="every request to production again")
    p.add_argument("--no-wait", action="store_true", help="return once the change is accepted")
    p.add_argument("--json", action="store_true", help="print the status as JSON")

    p = sub.add_parser("scale", help="change the number of serving workers (replicas)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--replicas", type=int, required=True)
    p.add_argument("--no-wait", action="store_true", help="return once the change is accepted")

    p = sub.add_parser("share", help="let other users or groups call the model (or nobody)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--user", action="append", default=[], help="a hub user (repeatable)")
    p.add_argument("--group", action="append", default=[], help="a hub group (repeatable)")

    p = sub.add_parser("logs", help="print the last lines of the model's serving log")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--alias", help="the log of this alias's processes (default: production)")
    p.add_argument("--tail", type=int, default=200, help="number of lines (default 200)")
    p.add_argument(
        "-f", "--follow", action="store_true", help="keep printing new lines (Ctrl-C stops)"
    )

    p = sub.add_parser("events", help="print the model's deployment and health events")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--since", type=int, default=0, help="only events after this id")

    p = sub.add_parser(
        "history",
        help="which version served when, and who published, rolled back, scaled or "
        "changed its access",
    )
    p.add_argument("name", metavar="NAME")

    p = sub.add_parser(
        "configure",
        help="change how the model is served (the inference log: a rolling restart; when it "
        "sleeps)",
    )
    p.add_argument("name", metavar="NAME")
    p.add_argument(
        "--inference-log",
        metavar="on|off|FRACTION",
        help="keep what callers send and get: on (every request), off, or a fraction (0.1)",
    )
    p.add_argument(
        "--sleep-after",
        metavar="SECONDS|never|default",
        help="release the model's processes after this many seconds without a request (the "
        "next request wakes it); never: keep it warm; default: the platform's",
    )
    p.add_argument("--no-wait", action="store_true", help="return once the change is accepted")

    p = sub.add_parser(
        "inference-log", help="print the requests the model's inference log kept (JSON Lines)"
    )
    p.add_argument("name", metavar="NAME")
    p.add_argument("--since", default="1h", help="a time or an age: 15m, 2h, 7d (default 1h)")
    p.add_argument("--until", help="a time or an age (default: now)")
    p.add_argument("--version", help="only rows answered by this version")
    p.add_argument("--limit", type=int, help="at most this many rows, the newest (100000)")

    p = sub.add_parser(
        "drift", help="compare the inputs logged since --since with the published data"
    )
    p.add_argument("name", metavar="NAME")
    p.add_argument("--since", default="1d", help="a time or an age (default 1d)")
    p.add_argument("--version", help="the version whose inputs to compare (default: the live one)")
    p.add_argument("--threshold", type=float, help="PSI at which an input has drifted (0.2)")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser("delete", help="stop serving a model and delete it")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    keys = sub.add_parser("keys", help="API keys for calling a model's endpoint")
    ksub = keys.add_subparsers(dest="keys_command", metavar="COMMAND", required=True)
    p = ksub.add_parser("create", help="mint a key (printed once)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--description", default="", help="what the key is for")
    p = ksub.add_parser("list", help="list keys (ids and descriptions, never the keys)")
    p.add_argument("name", metavar="NAME")
    p = ksub.add_parser("delete", help="revoke a key")
    p.add_argument("name", metavar="NAME")
    p.add_argument("key_id", metavar="ID")
    return models


class StepPrinter:
    """Progress on stderr: a self-rewriting bar for the upload, one line per deploy step."""

    def __init__(self, stream=None, width=30):
        self.stream = stream or sys.stderr
        self.width = width
        self.in_bar = False

    def __call__(self, step, message, fraction):
        if step == "upload":
            filled = round((fraction or 0) * self.width)
            bar = "#" * filled + "." * (self.width - filled)
            self.stream.write(f"\r  upload    [{bar}] {message}")
            self.in_bar = True
        else:
            if self.in_bar:
                self.stream.write("\n")
                self.in_bar = False
            self.stream.write(f"  {step:<9} {message}\n")
        self.stream.flush()


def write_history(history, out):
    """``mlhub models history``: the served intervals, then the changes with their actors."""
    out.write("served:\n")
    for s in history["served"]:
        until = s["until"] or "now (live)"
        alias = s.get("alias", DEFAULT_ALIAS)
        out.write(f"  {alias:<12}  {_short(s['version']):<12}  {s['since']}  until {until}\n")
    if not history["served"]:
        out.write("  no version has served yet\n")
    out.write("changes:\n")
    for c in history["changes"]:
        out.write(
            f"  {c['time']}  {c['actor'] or 'mlhub':<12}  {c['step']:<13}  "
            f"{c.get('alias', DEFAULT_ALIAS):<12}  {_short(c['version']):<12}  {c['message']}\n"
        )


def write_drift(drift, out):
    """``mlhub models drift``: one line per input, drifted ones marked."""
    out.write(
        f"{drift['recent_rows']} rows since {drift['since']} against {drift['reference_rows']} "
        f"published (version {_short(drift['version'])}); drifted: PSI >= {drift['threshold']:g}\n"
    )
    if drift["note"]:
        out.write(f"note: {drift['note']}\n")
    rows = [("INPUT", "KIND", "PSI", "KS", "P", "MEAN PUBLISHED -> NOW", "DRIFTED")]
    for f in drift["features"]:
        number = f.get("kind") == "number"
        rows.append(
            (
                f["feature"],
                f.get("kind") or "-",
                "-" if f["psi"] is None else f"{f['psi']:.3f}",
                f"{f['ks']:.3f}" if number else "-",
                f"{f['p_value']:.2g}" if number else "-",
                f"{f['reference_mean']:.4g} -> {f['recent_mean']:.4g}" if number else "-",
                {True: "YES", False: "no", None: "-"}[f["drifted"]],
            )
        )
    _write_columns(rows, out)


def _short(version):
    return (version or "-").removeprefix("sha256:")[:12]


def _batching(args):
    """``publish --batching/--batch-max-size/--batch-max-wait-ms`` -> ``PublisherClient``'s
    ``batching`` (None: not given, the model keeps its setting)."""
    if args.batching == "off":
        return False
    sizes = {"max_size": args.batch_max_size, "max_wait_ms": args.batch_max_wait_ms}
    given = {k: v for k, v in sizes.items() if v is not None}
    if given:
        return given
    return True if args.batching == "on" else None


def _resources(args):
    """``publish --cpu/--memory/--cpu-limit/--memory-limit`` -> ``PublisherClient``'s
    ``resources`` (None: none given, the model keeps its own)."""
    given = {k: getattr(args, k) for k in ("cpu", "memory", "cpu_limit", "memory_limit")}
    return {k: v for k, v in given.items() if v is not None} or None


def _print_table(models, out):
    rows = [("MODEL", "STATUS", "VERSION", "REPLICAS", "URL")]
    for m in models:
        rows.append(
            (
                f"{m['owner']}/{m['name']}",
                m["status"],
                _short(m["current_version"]),
                str(m["replicas"]),
                m["url"],
            )
        )
    _write_columns(rows, out)


def _show_resources(resources):
    """``requests cpu=500m memory=1Gi; limits memory=2Gi``, or the default."""
    parts = [
        f"{section} " + " ".join(f"{k}={v}" for k, v in sorted(values.items()))
        for section, values in (resources or {}).items()
        if values
    ]
    return "; ".join(parts) or "the hub's default"


def _print_model(m, out):
    batching = m.get("batching")
    batching = (
        f"on ({batching['max_size']} rows, {batching['max_wait_ms']} ms)" if batching else "off"
    )
    out.write(
        f"{m['owner']}/{m['name']}  {m['status']}  replicas {m['replicas']}\n"
        f"  url:      {m['url']}\n"
        f"  batching: {batching}\n"
        f"  inference log: {_inference_log(m.get('inference_log'))}\n"
        f"  sleeps:   {_sleeps(m.get('sleep_after'))}\n"
        f"  resources: {_show_resources(m.get('resources'))}\n"
        f"  predict:  {m['predict_url']}\n"
        f"  aliases:\n"
    )
    for a in m.get("aliases", []):
        asleep = "  (asleep)" if a.get("asleep") else ""
        out.write(f"    {a['name']:<12}  {_short(a['version']):<12}  {a['url']}{asleep}\n")
    out.write("  versions:\n")
    for v in m["versions"]:
        live = "  (live)" if v["id"] == m["current_version"] else ""
        out.write(
            f"    {v['id']}  {v['created']}  {v['runtime']}/{v['flavor']}  {v['size']} B{live}\n"
        )


def _alias_url(model, alias):
    """The URL ``alias`` of ``model`` (a ``Model``) serves at: the plain one for production."""
    found = [a["url"] for a in model.get("aliases", []) if a["name"] == alias]
    return found[0] if found else model["url"]


def _print_aliases(aliases, out):
    rows = [("ALIAS", "VERSION", "SINCE", "URL")]
    rows += [(a["name"], _short(a["version"]), a["since"] or "-", a["url"]) for a in aliases]
    _write_columns(rows, out)


def _write_columns(rows, out):
    """``rows`` (tuples of strings, the header first) as left-aligned columns."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        out.write("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n")


def _canary(args, client, out, progress):
    """``mlhub models canary``: start or change, promote, abort, or show."""
    wait = not args.no_wait
    if args.promote or args.abort:
        if args.version or args.percent is not None:
            raise MlhubError("--promote and --abort take no --version or --percent")
        if args.promote:
            client.promote_canary(args.name, wait=wait, progress=progress)
            model = client.get(args.name)
            out.write(f"{args.name}: production serves {_short(model['current_version'])}\n")
        else:
            client.abort_canary(args.name)
            out.write(f"{args.name}: canary aborted, every request goes to production\n")
        return 0
    if args.version or args.percent is not None:
        if not args.version or args.percent is None:
            raise MlhubError("a canary needs both --version and --percent")
        client.start_canary(args.name, args.version, args.percent, wait=wait, progress=progress)
    write_canary(client.canary(args.name), out, as_json=args.json)
    return 0


def _shadow(args, client, out, progress):
    """``mlhub models shadow``: start or change, stop, or compare."""
    if args.stop:
        if args.version or args.percent is not None:
            raise MlhubError("--stop takes no --version or --percent")
        client.stop_shadow(args.name)
        out.write(f"{args.name}: shadow stopped\n")
        return 0
    if args.version or args.percent is not None:
        if not args.version or args.percent is None:
            raise MlhubError("a shadow needs both --version and --percent")
        client.start_shadow(
            args.name, args.version, args.percent, wait=not args.no_wait, progress=progress
        )
    shadow = client.shadow(args.name, since=args.since)
    if args.json:
        out.write(json.dumps(shadow, indent=2) + "\n")
    else:
        write_shadow(shadow, out)
    return 0


def write_shadow(shadow, out):
    """A shadow's version and share, then how its answers and latency compare."""
    s = shadow["summary"]
    agreement = "-" if s["agreement"] is None else f"{s['agreement']:.1%}"
    out.write(
        f"shadow {_short(shadow['version'])} gets {shadow['percent']:g}% of production's "
        f"requests since {shadow['since'] or '-'}\n"
        f"  compared rows: {s['compared']} of {s['rows']}, agreeing: {s['agree']} "
        f"({agreement}), shadow errors: {s['shadow_errors']}, dropped (queue full): "
        f"{s['dropped']}\n"
    )
    rows = [("VERSION", "P50 MS", "P95 MS")]
    for label, key in (("production", "production"), ("shadow", "shadow")):
        rows.append(
            (
                label,
                "-" if s[f"{key}_p50_ms"] is None else f"{s[f'{key}_p50_ms']:g}",
                "-" if s[f"{key}_p95_ms"] is None else f"{s[f'{key}_p95_ms']:g}",
            )
        )
    _write_columns(rows, out)
    differ = [r for r in shadow["rows"] if not r["agree"]][:10]
    if differ:
        out.write("rows that differ (first 10):\n")
        for r in differ:
            answer = _answer(r["shadow"]) if r["shadow_status"] == 200 else r["shadow_error"]
            out.write(f"  {json.dumps(r['inputs'])}: {_answer(r['production'])} -> {answer}\n")


def _answer(value):
    """A prediction as a person reads it: numbers to 6 significant digits."""
    if isinstance(value, float):
        return f"{value:.6g}"
    return json.dumps(value)


def write_canary(canary, out, as_json=False):
    """A canary's version, share and each arm's numbers over the front's window."""
    if as_json:
        out.write(json.dumps(canary, indent=2) + "\n")
        return
    out.write(
        f"canary {_short(canary['version'])} gets {canary['percent']:g}% of the requests "
        f"since {canary['since'] or '-'} ({canary['url']})\n"
    )
    rows = [("ARM", "REQUESTS", "ERRORS", "ERROR RATE", "P50 MS", "P95 MS")]
    for arm in ("stable", "canary"):
        s = canary["stats"][arm]
        rate = "-" if s["error_rate"] is None else f"{s['error_rate']:.1%}"
        rows.append(
            (
                "production" if arm == "stable" else arm,
                str(s["requests"]),
                str(s["errors"]),
                rate,
                "-" if s["p50_ms"] is None else f"{s['p50_ms']:g}",
                "-" if s["p95_ms"] is None else f"{s['p95_ms']:g}",
            )
        )
    _write_columns(rows, out)


def _sample_argument(text):
    """``--inference-log``: on, off or a fraction."""
    sample = {"on": True, "off": False}.get(text.lower())
    if sample is not None:
        return sample
    try:
        return float(text)
    except ValueError:
        raise MlhubError(f"--inference-log takes on, off or a fraction, not {text!r}") from None


def _sleep_after(args):
    """``{"sleep_after": ...}`` when ``--sleep-after`` was given, else nothing."""
    if args.sleep_after is None:
        return {}
    return {"sleep_after": _sleep_after_argument(args.sleep_after)}


def _sleep_after_argument(text):
    """``--sleep-after``: whole seconds, never (0) or default (None)."""
    named = {"never": 0, "default": None}
    if text.lower() in named:
        return named[text.lower()]
    try:
        return int(text)
    except ValueError:
        raise MlhubError(f"--sleep-after takes seconds, never or default, not {text!r}") from None


def _sleeps(seconds):
    if seconds is None:
        return "?"
    return "never (kept warm)" if seconds == 0 else f"after {seconds} s without a request"


def _inference_log(sample):
    return "off" if not sample else f"keeps {sample * 100:g}% of the requests"


def _confirm(question):
    if not sys.stdin.isatty():
        raise MlhubError(f"{question} Refusing without --yes (no terminal to ask on).")
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def _run(args, client, out):
    cmd = args.models_command
    progress = StepPrinter()
    if cmd == "list":
        models = client.list(user=args.user)
        if args.json:
            out.write(json.dumps(models, indent=2) + "\n")
        elif models:
            _print_table(models, out)
        else:
            out.write("no models yet: publish one with 'mlhub models publish PATH --name NAME'\n")
    elif cmd == "show":
        model = client.get(args.name)
        if args.json:
            out.write(json.dumps(model, indent=2) + "\n")
        else:
            _print_model(model, out)
    elif cmd == "publish":
        result = client.publish(
            args.path,
            args.name,
            workers=args.workers,
            batching=_batching(args),
            resources=_resources(args),
            inference_log=args.inference_log,
            alias=args.alias,
            progress=progress,
            wait=not args.no_wait,
            **_sleep_after(args),
        )
        model = result if "owner" in result else result["model"]
        url = _alias_url(model, args.alias)
        out.write(f"{model['owner']}/{model['name']}: {model['status']} at {url}\n")
    elif cmd in ("rollback", "scale"):
        if cmd == "rollback":
            client.rollback(args.name, args.version, wait=not args.no_wait, progress=progress)
        else:
            client.scale(args.name, args.replicas, wait=not args.no_wait, progress=progress)
        model = client.get(args.name)
        out.write(
            f"{model['owner']}/{model['name']}: {model['status']}, version "
            f"{_short(model['current_version'])}, {model['replicas']} replica(s)\n"
        )
    elif cmd == "alias":
        if args.delete:
            client.delete_alias(args.name, args.alias)
            out.write(f"{args.name}: alias {args.alias} deleted\n")
        else:
            client.set_alias(
                args.name, args.alias, args.version, wait=not args.no_wait, progress=progress
            )
            _print_aliases(client.aliases(args.name), out)
    elif cmd == "aliases":
        _print_aliases(client.aliases(args.name), out)
    elif cmd == "canary":
        return _canary(args, client, out, progress)
    elif cmd == "shadow":
        return _shadow(args, client, out, progress)
    elif cmd == "share":
        model = client.share(args.name, args.user, args.group)
        who = [*model["shared_with"], *(f"group {g}" for g in model["shared_groups"])]
        out.write(f"{model['owner']}/{model['name']}: shared with {', '.join(who) or 'nobody'}\n")
    elif cmd == "logs":
        if args.follow:
            follow_logs(client, args.name, args.tail, out, alias=args.alias)
        else:
            out.write(client.logs(args.name, tail=args.tail, alias=args.alias))
    elif cmd == "events":
        for ev in client.events(args.name, since=args.since):
            out.write(
                f"{ev['id']:>6}  {ev['time']}  {_short(ev['version']):<12}  "
                f"{ev['level']:<5}  {ev['step']:<10} {ev['message']}\n"
            )
    elif cmd == "history":
        write_history(client.history(args.name), out)
    elif cmd == "configure":
        settings = {}
        if args.inference_log is not None:
            settings["inference_log"] = _sample_argument(args.inference_log)
        if args.sleep_after is not None:
            settings["sleep_after"] = _sleep_after_argument(args.sleep_after)
        if not settings:
            raise MlhubError("say what to change: --inference-log and/or --sleep-after")
        client.configure(args.name, wait=not args.no_wait, progress=progress, **settings)
        model = client.get(args.name)
        out.write(
            f"{model['owner']}/{model['name']}: {model['status']}, inference log "
            f"{_inference_log(model['inference_log'])}, sleeps "
            f"{_sleeps(model.get('sleep_after'))}\n"
        )
    elif cmd == "inference-log":
        for row in client.inference_log(
            args.name, since=args.since, until=args.until, version=args.version, limit=args.limit
        ):
            out.write(json.dumps(row) + "\n")
    elif cmd == "drift":
        drift = client.drift(
            args.name, since=args.since, version=args.version, threshold=args.threshold
        )
        if args.json:
            out.write(json.dumps(drift, indent=2) + "\n")
        else:
            write_drift(drift, out)
    elif cmd == "delete":
        if not args.yes and not _confirm(f"Delete {args.name} and all its versions?"):
            return 1
        client.delete(args.name)
        out.write(f"deleted {args.name}\n")
    elif cmd == "keys":
        if args.keys_command == "create":
            key = client.create_key(args.name, args.description)
            sys.stderr.write("The key is shown only now; store it somewhere safe.\n")
            out.write(key["key"] + "\n")
        elif args.keys_command == "list":
            for key in client.list_keys(args.name):
                out.write(f"{key['id']}  {key['created']}  {key['description']}\n")
        else:
            client.delete_key(args.name, args.key_id)
            out.write(f"revoked key {args.key_id}\n")
    return 0


def run_models(args, client=None, out=None):
    """Run a parsed ``mlhub models ...`` command; return the exit code (errors: 1, stderr)."""
    client = client or PublisherClient(url=args.url, token=args.token)
    try:
        return _run(args, client, out or sys.stdout)
    except MlhubError as exc:
        sys.stderr.write(f"mlhub models {args.models_command}: error: {exc.message}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130


FOLLOW_WINDOW = 500  # lines fetched per poll while following; more new lines a second are cut


def follow_logs(client, name, tail, out, interval=1.0, sleep=time.sleep, polls=None, alias=None):
    """Print the last ``tail`` lines, then each new line as the model writes it (Ctrl-C ends
    it). The API answers a log's tail, so each poll prints what follows the lines already
    printed (the longest overlap of the two tails)."""
    seen = []
    try:
        while polls is None or polls > 0:
            lines = client.logs(name, tail=max(tail, FOLLOW_WINDOW), alias=alias)
            lines = lines.splitlines(keepends=True)
            new = lines[_overlap(seen, lines) :] if seen else lines[-tail:]
            out.write("".join(new))
            out.flush()
            seen = lines
            polls = None if polls is None else polls - 1
            sleep(interval)
    except KeyboardInterrupt:
        pass


def _overlap(before, after):
    """How many lines at the start of ``after`` end ``before`` (the most that fit)."""
    for k in range(min(len(before), len(after)), 0, -1):
        if before[-k:] == after[:k]:
            return k
    return 0
