"""Launch: a form generated from the allowlist (api.catalog()). A refused
launch shows its error at the field that was wrong, and creates nothing.

The form turns each widget into the text job-run would take for it and hands
those texts to api.submit, so bgjobs.params coerces them exactly as it does
job-run's; the job-run line it shows is that same launch."""

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
    "any": "No type annotation: the method gets the text as typed (5 is the text '5').",
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
    kind, name = p["kind"], p["name"]
    label = f"{name} *" if p["required"] else name
    help_text = KIND_HELP.get(kind, "")
    initial = _initial(p)
    if p["varargs"]:
        st.text_area(
            f"*{name}",
            value=initial,
            key=key,
            height=68,
            help="Extra positional params, one per line, each as you would write it after --params=.",
        )
    elif kind == "bool":
        st.checkbox(label, value=initial, key=key, help=help_text)
    elif kind in ("int", "float"):
        st.number_input(
            label,
            value=initial,
            step=1 if kind == "int" else 1.0,
            format=None if kind == "int" else "%g",
            key=key,
            help=help_text,
            placeholder="required" if p["required"] else None,
        )
    elif kind in ("list", "dict"):
        st.text_area(label, value=initial, key=key, height=68, help=help_text, placeholder="JSON")
    else:
        st.text_input(label, value=initial, key=key, help=help_text)


def _initial(p: dict):
    """What param `p`'s widget shows at first: its default, in the widget's terms."""
    kind, default = p["kind"], p["default"]
    if p["varargs"]:
        return ""
    if kind == "bool":
        return bool(default)
    number = isinstance(default, (int, float)) and not isinstance(default, bool)
    if kind == "int":
        return default if number and isinstance(default, int) else None
    if kind == "float":
        return float(default) if number else None
    return "" if default is None else _default_text(p)


def _default_text(p: dict) -> str:
    """Param `p`'s default as text a shell would pass for it."""
    default = p["default"]
    if isinstance(default, str):
        return default
    try:
        return json.dumps(default)
    except (TypeError, ValueError):  # a default JSON cannot hold (a set, an object)
        return str(default)


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
    texts, errors = collect_params(params, lambda name: state.get(_key(class_path, method, name)))
    options = _options(cfg, class_path, lambda name: state.get(_key(class_path, method, name)))
    if errors:
        state[_ERRORS] = {"form": (class_path, method), "fields": errors}
        return
    try:
        job = api.submit(
            class_path, method, texts, config=cfg, source=common.SOURCE, user=common.viewer().name, **options
        )
    except RejectedError as exc:
        state[_ERRORS] = {"form": (class_path, method), "fields": {exc.field or _GENERAL: str(exc)}}
        return
    except BgjobsError as exc:
        state[_ERRORS] = {"form": (class_path, method), "fields": {_GENERAL: str(exc)}}
        return
    state.pop(_ERRORS, None)
    state[_RESULT] = {
        "id": job.id,
        "name": job.name,
        "cli": command_line(job.class_path, method, texts, options),
    }


def collect_params(params: list[dict], value_of) -> tuple[list[str], dict[str, str]]:
    """The form's values -> the params as text, one per param as `job-run
    --params=TEXT` takes them, and errors by field name. The form parses no
    value: bgjobs.params coerces these texts for the form as it does for
    job-run, so both store the same params. Trailing params left at their
    defaults are not passed, so the method's own defaults apply (a default of
    None need not fit the annotation)."""
    texts, defaulted, errors = [], [], {}
    extra: list[str] = []
    for p in params:
        value = value_of(p["name"])
        if p["varargs"]:
            extra = str(value or "").splitlines()
            continue
        if value is None and p["required"]:  # an empty number box
            errors[p["name"]] = f"param {p['name']} needs a value"  # worded as the library's refusals
            continue
        texts.append(_text(p, value))
        defaulted.append(_untouched(p, value))
    if not extra:
        while texts and defaulted and defaulted[-1]:
            texts.pop()
            defaulted.pop()
    return texts + extra, errors


def _untouched(p: dict, value) -> bool:
    """True if optional param `p`'s widget still shows its default (or a number
    box was emptied): the param means its default."""
    return not p["required"] and (value is None or value == _initial(p))


def _text(p: dict, value) -> str:
    """A widget's value as the text a shell would pass for it."""
    if p["kind"] == "bool":
        return "true" if value else "false"
    if _untouched(p, value):
        return _default_text(p)
    if isinstance(value, float):
        return _number(value)
    return str(value)


def _number(value: float) -> str:
    """A float as short text that reads back as the same float."""
    text = f"{value:g}"
    return text if float(text) == value else repr(value)


def _options(cfg: Config, class_path: str, value_of) -> dict:
    """The launch options the form sets: each only where it differs from the
    class's policy in config.yaml (which job-run applies too when it is left out)."""
    policy = cfg.policy_for(class_path)
    options = {}
    priority = value_of("@priority")
    if priority is not None and priority != policy.priority:
        options["priority"] = int(priority)
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


def command_line(class_path: str, method: str, texts: list[str], options: dict) -> str:
    """The job-run command line that makes the same launch: the same texts go to
    the same params rule, each word quoted for a POSIX shell (shlex.quote)."""
    words = ["job-run", class_path, method, *(f"--params={text}" for text in texts)]
    for name, value in options.items():
        words.append(f"--{name.replace('_', '-')}={_number(value) if isinstance(value, float) else value}")
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
