#!/bin/sh
# Start the container's command, but never the dashboard without a way to sign in:
# in a container it listens on 0.0.0.0, and it can launch and cancel jobs.
# Other commands (job-run, job-status, a shell) start as given.
set -eu

has_secret_auth() {
    # A mounted secrets.toml with a dashboard password or an OIDC [auth] section.
    for f in /app/.streamlit/secrets.toml "${HOME:-/nonexistent}/.streamlit/secrets.toml"; do
        if [ -r "$f" ] && grep -Eq '^[[:space:]]*(dashboard_password[[:space:]]*=[[:space:]]*["'"'"'][^"'"'"']|\[auth[].])' "$f"; then
            return 0
        fi
    done
    return 1
}

case "${1:-}" in
    streamlit)
        # The same opt-out as the dashboard's own refusal (bgjobs/ui/auth.py).
        case "${BGJOBS_DASHBOARD_ALLOW_UNAUTHENTICATED:-}" in
            1|[Tt][Rr][Uu][Ee]|[Yy][Ee][Ss]|[Oo][Nn]) allow_unauthenticated=1 ;;
            *) allow_unauthenticated= ;;
        esac
        if [ -z "$allow_unauthenticated" ] && [ -z "${BGJOBS_DASHBOARD_PASSWORD:-}" ] && ! has_secret_auth; then
            echo "bgjobs: refusing to start the dashboard without a password." >&2
            echo "  Set one:  docker run -e BGJOBS_DASHBOARD_PASSWORD=... (or --env-file)," >&2
            echo "  or mount /app/.streamlit/secrets.toml with dashboard_password or an [auth] section," >&2
            echo "  or, if a proxy in front already checks who comes in, -e BGJOBS_DASHBOARD_ALLOW_UNAUTHENTICATED=1." >&2
            exit 64
        fi
        ;;
esac
exec "$@"
