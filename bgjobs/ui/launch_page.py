"""Launch: a form generated from the allowlist (api.catalog()). A refused
launch shows its error at the field that was wrong, and creates nothing."""

from __future__ import annotations

import json
import shlex

import streamlit as st

from bgjobs import api
from bgjobs.config import Config
from bgjobs.errors import BgjobsError, RejectedError
from bgjobs.ui import common

_ERRORS = "_launch_errors"  # {"form": (class, method), "fields": {field: message}}
_RESULT = "_launch_result"  # {"id", "name", "cli"} of the last launch
_GENERAL = "_"  # an error that belongs to no field
KIND_HELP = {
    "int": "A whole number.",
    "float": "A number.",
    "bool": "True or false.",
    "str": "Text.",
    "list": "A JSON list, e.g. [1, 2].",
    "dict": 'A JSON object, e.g. {"key": 1}.',
    "any": "No type annotation: JSON if it parses (5, true, [1]), otherwise the text as typed.",
}


def render() -> None:
    cfg = common.config()
    st.title("Launch a job")
    try:
        entries = api.catalog(config=cfg)
    except BgjobsError as exc:
        st.error(str(exc))
        return
    if not entries:
        st.info(
            "No class is allowed to run. Add one to `allowed_classes` in "
            f"`{cfg.path}`, for example `jobs.example.ExampleJob`."
        )
        return
    by_class = {e["class"]: e for e in entries}
    class_path = st.selectbox(
        "Class",
        list(by_class),
        key="launch_class",
        help="Only classes listed in allowed_classes (config.yaml) can run.",
    )
    entry = by_class[class_path]
    if entry["error"]:
        st.error(entry["error"])
        return
    if entry["doc"]:
        st.caption(entry["doc"])
    methods = {m["name"]: m for m in entry["methods"]}
    if not methods:
        st.warning(f"{class_path} has no allowed public method.")
        return
    method = st.selectbox("Method", list(methods), key=f"launch_method:{class_path}")
    spec = methods[method]
    if spec["doc"]:
        st.caption(spec["doc"])
    errors = _errors_for(class_path, method)
    _field_error(errors, "class")
    _field_error(errors, "method")
    _form(cfg, class_path, method, spec["params"], errors)
    _field_error(errors, _GENERAL)
    _result()


def _key(class_path: str, method: str, name: str) -> str:
    return f"launch:{class_path}:{method}:{name}"


def _form(cfg: Config, class_path: str, method: str, params: list[dict], errors: dict) -> None:
    policy = cfg.policy_for(class_path)
    with st.form(key=f"launch_form:{class_path}:{method}"):
        if not params:
            st.caption("This method takes no params.")
        else:
            st.markdown(f"**Params of** `{method}`")
        for p in params:
            _param_input(_key(class_path, method, p["name"]), p)
            _field_error(errors, p["name"])
        _field_error(errors, "params")
        # Set apart from the params: a method's own `delay` must not read as the launch's.
        st.divider()
        st.markdown("**Launch options**")
        left, right = st.columns(2)
        with left:
            st.number_input(
                "Priority",
                min_value=-20,
                max_value=19,
                value=policy.priority,
                step=1,
                key=_key(class_path, method, "@priority"),
                help="Niceness, -20 (most urgent) to 19. The queue takes lower values "
                "first; below 0 needs privileges.",
            )
            _field_error(errors, "priority")
        with right:
            st.number_input(
                "Start delay (seconds)",
                min_value=0.0,
                value=0.0,
                step=1.0,
                key=_key(class_path, method, "@delay"),
                help="Start no earlier than this many seconds from now.",
            )
            _field_error(errors, "delay")
        with st.expander("Retries and timeout"):
            st.number_input(
                "Max retries",
                min_value=0,
                max_value=1000,
                value=policy.max_retries,
                step=1,
                key=_key(class_path, method, "@max_retries"),
                help="Retries after the first attempt.",
            )
            _field_error(errors, "max_retries")
            st.number_input(
                "Timeout per attempt (seconds, 0 for none)",
                min_value=0.0,
                value=float(policy.timeout or 0.0),
                step=1.0,
                key=_key(class_path, method, "@timeout"),
            )
            _field_error(errors, "timeout")
        st.form_submit_button(
            "Launch",
            key="launch_submit",
            type="primary",
            icon=":material/rocket_launch:",
            on_click=_launch,
            args=(cfg, class_path, method, params),
        )


def _param_input(key: str, p: dict) -> None:
    kind, default, name = p["kind"], p["default"], p["name"]
    label = f"{name} *" if p["required"] else name
    help_text = KIND_HELP.get(kind, "")
    if p["varargs"]:
        st.text_area(
            f"*{name}", value="[]", key=key, height=68, help="Extra positional params, as a JSON list."
        )
    elif kind == "bool":
        st.checkbox(label, value=bool(default), key=key, help=help_text)
    elif kind == "int":
        st.number_input(
            label,
            value=default if isinstance(default, int) else None,
            step=1,
            key=key,
            help=help_text,
            placeholder="required" if p["required"] else None,
        )
    elif kind == "float":
        value = float(default) if isinstance(default, (int, float)) else None
        st.number_input(
            label,
            value=value,
            step=1.0,
            format="%g",
            key=key,
            help=help_text,
            placeholder="required" if p["required"] else None,
        )
    elif kind in ("list", "dict"):
        st.text_area(
            label,
            value="" if default is None else json.dumps(default),
            key=key,
            height=68,
            help=help_text,
            placeholder="JSON",
        )
    else:
        shown = default if isinstance(default, str) or default is None else json.dumps(default)
        st.text_input(label, value=shown or "", key=key, help=help_text)


def _field_error(errors: dict, field: str) -> None:
    message = errors.get(field)
    if message:
        st.error(message, icon=":material/warning:")


def _errors_for(class_path: str, method: str) -> dict:
    saved = st.session_state.get(_ERRORS)
    if saved and tuple(saved["form"]) == (class_path, method):
        return saved["fields"]
    return {}


# --- the submit callback --------------------------------------------------------------------


def _launch(cfg: Config, class_path: str, method: str, params: list[dict]) -> None:
    state = st.session_state
    st.session_state.pop(_RESULT, None)
    values, errors = collect_params(params, lambda name: state.get(_key(class_path, method, name)))
    options = _options(cfg, class_path, lambda name: state.get(_key(class_path, method, name)))
    if errors:
        state[_ERRORS] = {"form": (class_path, method), "fields": errors}
        return
    try:
        job = api.submit(
            class_path, method, values, config=cfg, source=common.SOURCE, user=common.viewer().name, **options
        )
    except RejectedError as exc:
        state[_ERRORS] = {"form": (class_path, method), "fields": {exc.field or _GENERAL: str(exc)}}
        return
    except BgjobsError as exc:
        state[_ERRORS] = {"form": (class_path, method), "fields": {_GENERAL: str(exc)}}
        return
    state.pop(_ERRORS, None)
    state[_RESULT] = {"id": job.id, "name": job.name, "cli": _cli(job.class_path, method, values, options)}


def collect_params(params: list[dict], value_of) -> tuple[list, dict[str, str]]:
    """Form values -> the positional params to pass, and errors by field name.
    Trailing params left at their defaults are not passed, so the method's own
    defaults apply (a default of None need not fit the annotation)."""
    values, defaulted, errors = [], [], {}
    extra: list = []
    for p in params:
        raw = value_of(p["name"])
        try:
            if p["varargs"]:
                extra = _json(raw or "[]", "a JSON list")
                if not isinstance(extra, list):
                    raise ValueError("must be a JSON list, e.g. [1, 2]")
                continue
            value = _convert(p, raw)
        except ValueError as exc:
            errors[p["name"]] = f"param {p['name']} {exc}"  # worded as the library's refusals
            continue
        values.append(value)
        defaulted.append(not p["required"] and _same(value, p["default"]))
    if not extra:
        while values and defaulted and defaulted[-1]:
            values.pop()
            defaulted.pop()
    return values + extra, errors


def _convert(p: dict, raw):
    kind = p["kind"]
    if kind == "bool":
        return bool(raw)
    if kind in ("int", "float"):
        if raw is None:
            if p["required"]:
                raise ValueError("needs a value")
            return p["default"]
        return int(raw) if kind == "int" else float(raw)
    text = "" if raw is None else str(raw)
    if kind in ("list", "dict"):
        if not text.strip():
            if p["required"]:
                raise ValueError(f"needs a JSON {kind}")
            return p["default"]
        return _json(text, f"a JSON {kind}")
    if kind == "any":
        if not text.strip() and not p["required"]:
            return p["default"]
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def _json(text: str, what: str):
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ValueError(f"is not valid JSON ({exc.msg}); enter {what}") from None


def _same(value, default) -> bool:
    return (
        type(value) is type(default)
        and value == default
        or (isinstance(value, float) and isinstance(default, int) and value == default)
    )


def _options(cfg: Config, class_path: str, value_of) -> dict:
    """Priority and delay always; retries and timeout only when changed."""
    policy = cfg.policy_for(class_path)
    options = {
        "priority": int(value_of("@priority") if value_of("@priority") is not None else policy.priority)
    }
    delay = value_of("@delay") or 0.0
    if delay > 0:
        options["delay"] = float(delay)
    retries = value_of("@max_retries")
    if retries is not None and retries != policy.max_retries:
        options["max_retries"] = int(retries)
    timeout = value_of("@timeout") or 0.0
    if timeout > 0 and timeout != policy.timeout:
        options["timeout"] = float(timeout)
    return options


def _cli(class_path: str, method: str, values: list, options: dict) -> str:
    words = ["job-run", class_path, method]
    for v in values:
        words.append("--params=" + (v if isinstance(v, str) else json.dumps(v)))
    for name, value in options.items():
        if name == "priority" and value == 0:
            continue
        words.append(
            f"--{name.replace('_', '-')}={value:g}"
            if isinstance(value, float)
            else f"--{name.replace('_', '-')}={value}"
        )
    return shlex.join(words)


def _result() -> None:
    result = st.session_state.get(_RESULT)
    if not result:
        return
    st.success(f"Launched job {result['id']} ({result['name']}).", icon=":material/rocket_launch:")
    st.page_link(
        common.page_path("jobs"),
        label=f"Open job {result['id']}",
        query_params={"job": str(result["id"])},
        icon=":material/open_in_new:",
    )
    st.caption("The same launch from a shell:")
    st.code(result["cli"], language="bash")
