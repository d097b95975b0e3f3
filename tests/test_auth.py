from chargeback.core.auth import bearer_token, is_operator, require_operator
from chargeback.core.responses import RequestError


def _env(tmp_path, token="op-token-123"):
    (tmp_path / "admin-token").write_text(token + "\n")
    return {"SECRETS_DIR": str(tmp_path)}


def test_the_admin_token_as_bearer_makes_an_operator(tmp_path):
    env = _env(tmp_path)
    assert is_operator({"Authorization": "Bearer op-token-123"}, env)
    assert is_operator({"Authorization": "bearer op-token-123"}, env)


def test_a_wrong_missing_or_other_scheme_token_is_not_an_operator(tmp_path):
    env = _env(tmp_path)
    assert not is_operator({"Authorization": "Bearer op-token-12"}, env)
    assert not is_operator({"Authorization": "Basic op-token-123"}, env)
    assert not is_operator({"Authorization": "Bearer "}, env)
    assert not is_operator({}, env)


def test_without_the_secret_nobody_is_an_operator(tmp_path):
    assert not is_operator({"Authorization": "Bearer anything"}, {"SECRETS_DIR": str(tmp_path)})


def test_require_operator_answers_401_naming_the_option(tmp_path):
    env = _env(tmp_path)
    try:
        require_operator({}, "dry_run", env)
    except RequestError as exc:
        assert exc.status == 401 and exc.reason.startswith("dry_run needs the operator's token")
        assert exc.headers["WWW-Authenticate"].startswith("Bearer")
    else:
        raise AssertionError("no 401")
    require_operator({"Authorization": "Bearer op-token-123"}, "dry_run", env)


def test_bearer_token_parses_the_header():
    assert bearer_token({"Authorization": "Bearer  abc "}) == "abc"
    assert bearer_token({"Authorization": "Token abc"}) is None
