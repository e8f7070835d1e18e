#!/usr/bin/env bash
# Checks the deployment kit in deploy/ against the built binaries:
#   - Prometheus alert rules: `promtool check rules`, `promtool test rules`,
#     every alert tested both firing and staying quiet, every metric name in
#     the rules and the tests one that jobfleet exports;
#   - Grafana dashboard: well-formed JSON of an importable shape (datasource
#     and queue variables, panels, targets), every query valid PromQL (through
#     promtool) naming only metrics jobfleet exports, every metric shown;
#   - systemd units: `systemd-analyze verify` (which must print nothing) and
#     `systemd-analyze security` in a scratch root where the built binaries are
#     installed at the units' paths and the sysusers file has made the user;
#     TimeoutStopSec longer than the example config's graceful shutdown;
#   - the units' command lines and the example config, run with the built
#     binaries against an address where no Redis listens.
# Metric names come from the sources that export them
# (crates/jobfleet-dashboard/src/prometheus.rs, crates/jobfleet-worker/src/metrics.rs).
# Installs what it needs when missing, from Debian's packages: promtool (the
# prometheus package, whose server it keeps from starting or being enabled),
# systemd-analyze (systemd) and python3.
# Usage: scripts/check-deploy.sh
#   JOBFLEET_BIN_DIR  folder of the built jobfleet and jobfleet-worker
#                     (default: target/debug of this repository)
# Exits 1 when any check fails, after running them all, naming each failure.
set -euo pipefail
BIN_DIR=${JOBFLEET_BIN_DIR:-$(dirname "$0")/../target/debug}
BIN_DIR=$(cd "$BIN_DIR" 2>/dev/null && pwd) || {
  echo "error: JOBFLEET_BIN_DIR (${JOBFLEET_BIN_DIR:-target/debug}) is not a folder: build first (cargo build) or point it at the binaries" >&2
  exit 1
}
cd "$(dirname "$0")/.."
. scripts/lib.sh
ROOT=$PWD
DEPLOY=$ROOT/deploy
need_bin "$BIN_DIR/jobfleet" "$BIN_DIR/jobfleet-worker"

if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
WORK=$(mktemp -d)
POLICY_ADDED=""
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  if [ -n "$POLICY_ADDED" ]; then $SUDO rm -f "$POLICY_ADDED" || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

apt_install() {
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: $* missing and there is no apt-get to install it: install it by hand" >&2
    exit 1
  fi
  echo "== installing Debian packages the checks need: $*"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# promtool ships inside the Prometheus server's package. Keep the server from
# starting (Debian's policy-rc.d, which invoke-rc.d and deb-systemd-invoke
# obey) and from starting at boot: only promtool is wanted.
install_promtool() {
  local policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    $SUDO sh -c "printf '#!/bin/sh\n# added by check-deploy.sh while installing prometheus\nexit 101\n' >$policy && chmod 755 $policy"
    POLICY_ADDED=$policy
  fi
  apt_install prometheus
  if [ -n "$POLICY_ADDED" ]; then
    $SUDO rm -f "$POLICY_ADDED"
    POLICY_ADDED=""
  fi
  if [ -d /run/systemd/system ]; then
    $SUDO systemctl disable --now prometheus.service >/dev/null 2>&1 || true
  elif [ -x /etc/init.d/prometheus ]; then
    $SUDO /etc/init.d/prometheus stop >/dev/null 2>&1 || true
  fi
  echo "   (the prometheus server it brings is stopped and not enabled; only promtool is used)"
}

command -v python3 >/dev/null 2>&1 || apt_install python3
command -v systemd-analyze >/dev/null 2>&1 || apt_install systemd
command -v promtool >/dev/null 2>&1 || install_promtool

FAILED=()
N=0
# check WHAT CMD...: runs CMD; on failure says so, shows its output, and
# goes on with the next check.
check() {
  local what=$1 log
  shift
  N=$((N + 1))
  log=$WORK/check.$N.log
  if "$@" >"$log" 2>&1; then
    echo "ok   $what"
  else
    echo "FAIL $what" >&2
    sed 's/^/     | /' "$log" >&2
    FAILED+=("$what")
  fi
}

# The checks that read files: python3, standard library only.
cat >"$WORK/check.py" <<'PY'
import json, pathlib, re, sys

ROOT = pathlib.Path(sys.argv[1])
DASHBOARD_SRC = ROOT / "crates/jobfleet-dashboard/src/prometheus.rs"
WORKER_SRC = ROOT / "crates/jobfleet-worker/src/metrics.rs"
# Prometheus' own series that the rules may use.
PROMETHEUS_OWN = {"up"}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and",
            "or", "unless", "bool", "offset", "inf", "nan", "atan2"}


def fail(errors):
    for e in errors:
        print(e)
    sys.exit(1 if errors else 0)


def exported():
    """(series names, names carrying a queue label) the binaries export."""
    dash = DASHBOARD_SRC.read_text().split("#[cfg(test)]")[0]
    worker = WORKER_SRC.read_text().split("#[cfg(test)]")[0]
    dash_names = set(re.findall(r'"(jobfleet_[a-z0-9_]+)"', dash))
    worker_names = set(re.findall(r'"(jobfleet_[a-z0-9_]+)"', worker))
    histograms = set(re.findall(r'describe_histogram!\(\s*"(jobfleet_[a-z0-9_]+)"', worker))
    if "jobfleet_queue_pending" not in dash_names or "jobfleet_jobs_total" not in worker_names:
        fail([f"could not read the metric names from {DASHBOARD_SRC} and {WORKER_SRC}"])
    # Every per-queue series of the dashboard has the queue label; the fleet's
    # worker count has none. A worker series has it when it is recorded with one.
    queued = {n for n in dash_names if n.startswith("jobfleet_queue_")}
    for name, args in re.findall(r'metrics::(?:counter|gauge|histogram)!\(\s*"(jobfleet_\w+)"([^;]*)', worker):
        if '"queue" =>' in args:
            queued.add(name)
    names = set()
    for n in dash_names | worker_names:
        if n in histograms:
            names |= {n + "_bucket", n + "_sum", n + "_count"}
            if n in queued:
                queued |= {n + "_bucket", n + "_sum", n + "_count"}
        else:
            names.add(n)
    return names, queued


def metric_names(expr):
    """The series names a PromQL expression selects."""
    e = re.sub(r"\$\{[^}]*\}|\$\w+", " ", expr)
    e = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', " ", e)
    e = re.sub(r"#[^\n]*", " ", e)
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    names = set()
    for m in re.finditer(r"(?<![\w.:])[A-Za-z_:][\w:]*", e):
        word = m.group(0)
        if re.match(r"\s*\(", e[m.end():]) or word.lower() in KEYWORDS:
            continue
        names.add(word)
    return names


def rule_exprs(text, path):
    """Every rule's expr of a rules file written as this kit writes them."""
    lines = text.splitlines()
    exprs, i = [], 0
    while i < len(lines):
        m = re.match(r"^(\s*)expr:\s*(.*)$", lines[i])
        i += 1
        if not m:
            continue
        indent, value = len(m.group(1)), m.group(2).strip()
        if value in ("|", "|-", ">", ">-"):
            block = []
            while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent):
                block.append(lines[i])
                i += 1
            exprs.append("\n".join(block))
        else:
            exprs.append(value.strip("'\""))
    rules = len(re.findall(r"^\s*- (?:alert|record):", text, re.M))
    if len(exprs) != rules:
        fail([f"{path}: found {len(exprs)} exprs for {rules} rules: write each expr as `expr: ...` or `expr: |`"])
    return exprs


def rules(rules_path, tests_path):
    """Metric names of the rules and the tests; every alert tested firing and quiet."""
    names, _ = exported()
    known = names | PROMETHEUS_OWN
    text = pathlib.Path(rules_path).read_text()
    errors = []
    for expr in rule_exprs(text, rules_path):
        for n in sorted(metric_names(expr) - known):
            errors.append(f"{rules_path}: `{n}` is not a series jobfleet exports (expr: {expr.strip()[:80]}...)")
    alerts = re.findall(r"^\s*- alert:\s*(\w+)", text, re.M)
    if len(set(alerts)) != len(alerts):
        errors.append(f"{rules_path}: an alert name is used twice")
    tests = pathlib.Path(tests_path).read_text()
    for series in re.findall(r"^\s*- series:\s*'([A-Za-z_:][\w:]*)", tests, re.M):
        if series not in known:
            errors.append(f"{tests_path}: input series `{series}` is not one jobfleet exports: a test on it proves nothing")
    fired, quiet = set(), set()
    for name, empty in re.findall(r"alertname:\s*(\w+)\s*\n\s*exp_alerts:[ \t]*(\[\])?", tests):
        if name not in alerts:
            errors.append(f"{tests_path}: tests `{name}`, which is not an alert of {rules_path}")
        (quiet if empty else fired).add(name)
    for a in alerts:
        if a not in fired:
            errors.append(f"{tests_path}: no test where {a} fires")
        if a not in quiet:
            errors.append(f"{tests_path}: no test where {a} stays quiet")
    fail(errors)


def panels_of(panels):
    for p in panels:
        yield p
        yield from panels_of(p.get("panels", []))


def grafana(path, promql_out):
    """An importable dashboard whose queries name only exported series."""
    names, queued = exported()
    try:
        d = json.loads(pathlib.Path(path).read_text())
    except json.JSONDecodeError as e:
        fail([f"{path}: not well-formed JSON: {e}"])
    errors = []
    for key in ("title", "uid", "schemaVersion", "panels", "templating", "time"):
        if key not in d:
            errors.append(f"{path}: no top-level `{key}`")
    if not isinstance(d.get("schemaVersion"), int) or d.get("schemaVersion", 0) < 30:
        errors.append(f"{path}: schemaVersion must be a number of Grafana 8 or later (>= 30)")
    if d.get("id") is not None:
        errors.append(f"{path}: `id` must be null, or importing overwrites another dashboard")
    variables = {v.get("name"): v for v in d.get("templating", {}).get("list", [])}
    ds = [n for n, v in variables.items() if v.get("type") == "datasource" and v.get("query") == "prometheus"]
    if len(ds) != 1:
        fail(errors + [f"{path}: needs one datasource variable of type prometheus (found {ds})"])
    ds_ref = "${%s}" % ds[0]
    queue = variables.get("queue")
    if not queue or queue.get("type") != "query" or "queue" not in json.dumps(queue.get("query")):
        errors.append(f"{path}: needs a `queue` query variable (label_values(..., queue))")
    elif queue.get("datasource", {}).get("uid") != ds_ref:
        errors.append(f"{path}: the queue variable must use the datasource {ds_ref}")
    ids, used, promql = set(), set(), []
    for p in panels_of(d.get("panels", [])):
        pid, kind = p.get("id"), p.get("type")
        where = f"{path}: panel {pid} ({p.get('title')!r})"
        if not isinstance(pid, int) or pid in ids:
            errors.append(f"{where}: id missing or not unique")
        ids.add(pid)
        g = p.get("gridPos", {})
        if not all(isinstance(g.get(k), int) for k in "hwxy") or g["x"] + g["w"] > 24:
            errors.append(f"{where}: gridPos needs integers h, w, x, y within 24 columns")
        if not kind or not p.get("title") and kind != "row":
            errors.append(f"{where}: needs a type and a title")
        if kind in ("row", "text"):
            continue
        if p.get("datasource", {}).get("uid") != ds_ref:
            errors.append(f"{where}: datasource must be {ds_ref}")
        targets = p.get("targets", [])
        if not targets:
            errors.append(f"{where}: no queries")
        refs = [t.get("refId") for t in targets]
        if len(set(refs)) != len(refs) or None in refs:
            errors.append(f"{where}: every query needs its own refId")
        for t in targets:
            expr = t.get("expr", "")
            if not expr.strip():
                errors.append(f"{where}: query {t.get('refId')} has no expr")
                continue
            if t.get("datasource", {}).get("uid", ds_ref) != ds_ref:
                errors.append(f"{where}: query {t.get('refId')} must use {ds_ref}")
            found = metric_names(expr)
            used |= found
            for n in sorted(found - names):
                errors.append(f"{where}: `{n}` is not a series jobfleet exports")
            for m in re.finditer(r"(jobfleet_\w+)\s*(\{[^}]*\})?", expr):
                if m.group(1) in queued and '$queue' not in (m.group(2) or ""):
                    errors.append(f"{where}: {m.group(1)} is not filtered by the queue variable (queue=~\"$queue\")")
            concrete = expr
            for var, value in (("$__rate_interval", "5m"), ("$__interval", "1m"), ("$__range", "1h")):
                concrete = concrete.replace(var, value)
            concrete = re.sub(r"\$\{\w+(?::\w+)?\}|\$\w+", ".*", concrete)
            promql.append({"record": f"grafana:panel_{pid}_{t.get('refId')}", "expr": concrete})
    for n in sorted(names - used):
        errors.append(f"{path}: no panel shows `{n}`")
    # YAML is a superset of JSON: promtool reads this as a rules file, and so
    # parses every query.
    pathlib.Path(promql_out).write_text(json.dumps({"groups": [{"name": "grafana", "rules": promql}]}, indent=1))
    fail(errors)


def seconds(text):
    total, rest = 0.0, text.strip().replace(" ", "")
    units = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600, "ms": 0.001}
    for value, unit in re.findall(r"(\d+(?:\.\d+)?)([a-z]*)", rest):
        if unit not in units:
            fail([f"cannot read the duration {text!r}"])
        total += float(value) * units[unit]
    return total


def timeouts(unit, config):
    """The unit waits out the worker's whole graceful shutdown."""
    stop = re.search(r"^TimeoutStopSec=(.+)$", pathlib.Path(unit).read_text(), re.M)
    grace = re.search(r'^grace\s*=\s*"([^"]+)"', pathlib.Path(config).read_text(), re.M)
    if not stop or not grace:
        fail([f"{unit} needs TimeoutStopSec= and {config} a grace setting"])
    stop_s, grace_s = seconds(stop.group(1)), seconds(grace.group(1))
    # Running jobs get `grace`; writing the outcomes left gets up to `grace`
    # again while Redis is away; then the hand-back and leaving.
    need = 2 * grace_s + 15
    fail([] if stop_s >= need else
         [f"{unit}: TimeoutStopSec={stop.group(1)} is shorter than 2 x grace ({grace.group(1)}) + 15s = {need:.0f}s: "
          "systemd would SIGKILL a worker still shutting down gracefully"])


commands = {"rules": rules, "grafana": grafana, "timeouts": timeouts}
commands[sys.argv[2]](*sys.argv[3:])
PY
py() { python3 "$WORK/check.py" "$ROOT" "$@"; }

PROM=$DEPLOY/prometheus
echo "== Prometheus alert rules (promtool $(promtool --version 2>&1 | sed -n 's/^promtool, version \([^ ]*\).*/\1/p'))"
check "promtool check rules jobfleet-alerts.yml" promtool check rules "$PROM/jobfleet-alerts.yml"
check "promtool test rules jobfleet-alerts.test.yml" promtool test rules "$PROM/jobfleet-alerts.test.yml"
check "every alert tested firing and quiet; only exported series in rules and tests" \
  py rules "$PROM/jobfleet-alerts.yml" "$PROM/jobfleet-alerts.test.yml"

echo "== Grafana dashboard"
check "jobfleet.json: importable, every query on exported series, every series shown" \
  py grafana "$DEPLOY/grafana/jobfleet.json" "$WORK/grafana-queries.yml"
if [ -s "$WORK/grafana-queries.yml" ]; then
  check "jobfleet.json: every query is valid PromQL" promtool check rules "$WORK/grafana-queries.yml"
fi

echo "== systemd units (systemd $(systemd-analyze --version | sed -n '1s/^systemd \([0-9]*\).*/\1/p'))"
# A scratch root: the system's own units (targets the units name), ours in
# /etc/systemd/system with the example drop-in, the built binaries where
# ExecStart expects them, and the user made by the sysusers file.
SYSROOT=$WORK/root
mkdir -p "$SYSROOT/usr/lib/systemd" "$SYSROOT/etc/systemd/system" "$SYSROOT/usr/local/bin" \
  "$SYSROOT/etc/sysusers.d" "$SYSROOT/etc/jobfleet"
for dir in /usr/lib/systemd/system /lib/systemd/system; do
  if [ -e "$dir/sysinit.target" ]; then
    cp -a "$dir" "$SYSROOT/usr/lib/systemd/"
    break
  fi
done
cp "$DEPLOY"/systemd/*.service "$SYSROOT/etc/systemd/system/"
cp -r "$DEPLOY"/systemd/*.service.d "$SYSROOT/etc/systemd/system/"
cp "$BIN_DIR/jobfleet" "$BIN_DIR/jobfleet-worker" "$SYSROOT/usr/local/bin/"
cp "$DEPLOY/systemd/jobfleet.sysusers.conf" "$SYSROOT/etc/sysusers.d/jobfleet.conf"
cp "$DEPLOY/jobfleet.example.toml" "$SYSROOT/etc/jobfleet/thumbnails.toml"
UNITS=(jobfleet-worker@thumbnails.service jobfleet-worker@default.service jobfleet-dashboard.service)

# verify reports unknown keys and bad values as warnings and still exits 0:
# anything it prints is a failure.
verify_quietly() {
  local out
  out=$(systemd-analyze verify --root="$SYSROOT" "$@" 2>&1) || {
    echo "$out"
    return 1
  }
  [ -z "$out" ] || {
    echo "$out"
    return 1
  }
}
sysusers_made_user() {
  systemd-sysusers --root="$SYSROOT" && grep -q '^jobfleet:' "$SYSROOT/etc/passwd"
}
check "jobfleet.sysusers.conf makes the jobfleet user" sysusers_made_user
check "systemd-analyze verify ${UNITS[*]}" verify_quietly "${UNITS[@]}"
# Exposure 0 (locked down) to 10 (none); 2.0 and under is systemd's "OK".
check "systemd-analyze security: exposure at most 2.0" \
  systemd-analyze security --offline=yes --root="$SYSROOT" --threshold=20 "${UNITS[@]}"
check "TimeoutStopSec outlasts the worker's graceful shutdown (2 x grace + 15s)" \
  py timeouts "$DEPLOY/systemd/jobfleet-worker@.service" "$DEPLOY/jobfleet.example.toml"

echo "== the units' command lines and the example config, with the built binaries"
# ExecStart= of a unit, one argument a line: the binary taken from BIN_DIR,
# the instance's config file the example, and the unit's variables their
# Environment= defaults.
exec_start() {
  local unit=$1 line env name value
  line=$(sed -n 's/^ExecStart=//p' "$unit")
  while IFS= read -r env; do
    name=${env%%=*}
    value=${env#*=}
    line=${line//"\${$name}"/$value}
    line=${line//"\$$name"/$value}
  done < <(sed -n 's/^Environment=//p' "$unit")
  line=${line//\/usr\/local\/bin\//$BIN_DIR/}
  line=${line//\/etc\/jobfleet\/%i.toml/$DEPLOY/jobfleet.example.toml}
  # Split at whitespace, as systemd splits a command line without quotes.
  # shellcheck disable=SC2086
  printf '%s\n' $line
}
# argv_of UNIT: sets argv to its ExecStart=; fails when something is left
# unresolved (a variable without a default, a specifier).
argv_of() {
  mapfile -t argv < <(exec_start "$1")
  case "${argv[*]}" in
    *'$'* | *%*)
      echo "$1: cannot resolve ExecStart= to a command line: ${argv[*]}"
      return 1
      ;;
  esac
}
NO_REDIS=redis://127.0.0.1:1
# The worker reads the example config, passes its start-up checks and waits
# for Redis (none listens on port 1); SIGTERM then stops it with 0. Flags
# override the config's redis, allow-dir (its folder need not exist here)
# and metrics (any free port).
worker_takes_example_config() {
  local log=$WORK/worker.log pid rc
  argv_of "$DEPLOY/systemd/jobfleet-worker@.service" || return 1
  mkdir -p "$WORK/photos"
  env -i PATH=/usr/bin:/bin HOME="$WORK" "${argv[@]}" --redis "$NO_REDIS" --allow-dir "$WORK/photos" \
    --metrics 127.0.0.1:0 --log-level info >"$log" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  for _ in $(seq 100); do
    grep -q "unreachable at start-up" "$log" && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if ! grep -q "unreachable at start-up" "$log"; then
    kill -TERM "$pid" 2>/dev/null || true
    echo "the worker did not get as far as waiting for Redis with ${argv[*]}:"
    cat "$log"
    return 1
  fi
  kill -TERM "$pid"
  if wait "$pid"; then rc=0; else rc=$?; fi
  [ "$rc" -eq 0 ] || {
    echo "the worker exited $rc on SIGTERM, not 0:"
    cat "$log"
    return 1
  }
}
# The dashboard parses its command line, then fails (3) to reach Redis.
dashboard_takes_its_command_line() {
  local log=$WORK/dashboard.log rc
  argv_of "$DEPLOY/systemd/jobfleet-dashboard.service" || return 1
  if env -i PATH=/usr/bin:/bin HOME="$WORK" timeout 20 "${argv[@]}" --redis "$NO_REDIS" >"$log" 2>&1; then rc=0; else rc=$?; fi
  if [ "$rc" -ne 3 ] || ! grep -q "cannot reach Redis" "$log"; then
    echo "expected exit 3 and 'cannot reach Redis' from ${argv[*]}; got exit $rc:"
    cat "$log"
    return 1
  fi
}
check "jobfleet-worker@.service's ExecStart runs with jobfleet.example.toml" worker_takes_example_config
check "jobfleet-dashboard.service's ExecStart parses" dashboard_takes_its_command_line

if [ ${#FAILED[@]} -gt 0 ]; then
  echo "check-deploy: ${#FAILED[@]} of $N checks failed:" >&2
  printf '  - %s\n' "${FAILED[@]}" >&2
  exit 1
fi
echo "check-deploy: all $N checks passed"
