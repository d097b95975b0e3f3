"""The settings loader and the secret reader."""
import pytest

from chargeback.core.settings import ConfigError, load, read_secret


def test_secret_is_read_from_secrets_dir_without_trailing_newline(tmp_path):
    (tmp_path / "webhook-secret").write_text("s3cret\n")
    assert read_secret("webhook-secret", {"SECRETS_DIR": str(tmp_path)}) == "s3cret"


def test_missing_or_empty_secret_is_none(tmp_path):
    (tmp_path / "empty").write_text("")
    env = {"SECRETS_DIR": str(tmp_path)}
    assert read_secret("absent", env) is None
    assert read_secret("empty", env) is None


def test_database_url_env_wins_over_the_secret(tmp_path):
    (tmp_path / "database-url").write_text("postgresql://from-secret/db")
    assert load({"SECRETS_DIR": str(tmp_path)}).database_url == "postgresql://from-secret/db"
    assert load({"SECRETS_DIR": str(tmp_path), "DATABASE_URL": "postgresql://env/db"}
                ).database_url == "postgresql://env/db"


def test_defaults_when_nothing_is_set(tmp_path):
    s = load({"SECRETS_DIR": str(tmp_path)})
    assert s.database_url is None
    assert s.gateway_url == "http://127.0.0.1:8080"
    assert s.exclude_namespaces == ("openfaas-system",)


def test_lists_and_integers_are_parsed_and_bad_values_named():
    s = load({"EXCLUDE_NAMESPACES": "openfaas-system, kube-system ,", "DB_POOL_MAX": "9",
              "GATEWAY_URL": "http://gateway.openfaas:8080/"})
    assert s.exclude_namespaces == ("openfaas-system", "kube-system")
    assert s.db_pool_max == 9
    assert s.gateway_url == "http://gateway.openfaas:8080"
    with pytest.raises(ConfigError, match="DB_POOL_MAX='many': expected an integer"):
        load({"DB_POOL_MAX": "many"}).db_pool_max


def test_meter_capacity_settings_and_their_defaults():
    s = load({})
    assert (s.tenant_annotation_prefix, s.tenant_node_labels, s.max_gap_seconds) == (
        "chargeback/", ("chargeback/tenant",), 300)
    assert s.allow_clock_override is False and s.kubeconfig is None
    s = load({"TENANT_NODE_LABELS": "chargeback/tenant, vcluster.loft.sh/managed-by",
              "MAX_GAP_SECONDS": "3600", "ALLOW_CLOCK_OVERRIDE": "true",
              "KUBECONFIG": "/tmp/kc"})
    assert s.tenant_node_labels == ("chargeback/tenant", "vcluster.loft.sh/managed-by")
    assert (s.max_gap_seconds, s.allow_clock_override, s.kubeconfig) == (3600, True, "/tmp/kc")
    with pytest.raises(ConfigError, match="ALLOW_CLOCK_OVERRIDE='maybe': expected true or false"):
        load({"ALLOW_CLOCK_OVERRIDE": "maybe"}).allow_clock_override
    with pytest.raises(ConfigError, match="MAX_GAP_SECONDS=0: expected a positive integer"):
        load({"MAX_GAP_SECONDS": "0"}).max_gap_seconds


def test_raw_secret_keeps_the_trailing_newline(tmp_path):
    (tmp_path / "webhook-secret").write_text("s3cret\n")
    env = {"SECRETS_DIR": str(tmp_path)}
    assert read_secret("webhook-secret", env, raw=True) == "s3cret\n"
    assert read_secret("absent", env, raw=True) is None


def test_receive_usage_limits_default_and_parse(tmp_path):
    s = load({"SECRETS_DIR": str(tmp_path)})
    assert (s.max_body_bytes, s.max_future_skew_s) == (16 * 1024 * 1024, 300)
    s = load({"MAX_BODY_BYTES": "1000", "MAX_FUTURE_SKEW_SECONDS": "60"})
    assert (s.max_body_bytes, s.max_future_skew_s) == (1000, 60)
    with pytest.raises(ConfigError, match="MAX_BODY_BYTES='16M': expected an integer"):
        load({"MAX_BODY_BYTES": "16M"}).max_body_bytes


def test_database_bounds_default_and_accept_decimal_seconds():
    s = load({})
    assert (s.db_statement_timeout_s, s.db_lock_timeout_s,
            s.db_idle_in_transaction_timeout_s) == (15.0, 5.0, 60.0)
    s = load({"DB_STATEMENT_TIMEOUT": "300", "DB_LOCK_TIMEOUT": "0.5"})
    assert (s.db_statement_timeout_s, s.db_lock_timeout_s) == (300.0, 0.5)
    with pytest.raises(ConfigError, match="DB_LOCK_TIMEOUT='soon': expected a number"):
        load({"DB_LOCK_TIMEOUT": "soon"}).db_lock_timeout_s
    with pytest.raises(ConfigError, match="DB_STATEMENT_TIMEOUT='0': expected a positive"):
        load({"DB_STATEMENT_TIMEOUT": "0"}).db_statement_timeout_s


def test_mail_settings_smtp_url_env_wins_and_the_issuer_address_has_lines(tmp_path):
    (tmp_path / "smtp-url").write_text("smtp+starttls://u:p@smtp.example:587\n")
    s = load({"SECRETS_DIR": str(tmp_path), "ISSUER_ADDRESS": "1 Cloud Street\\n10115 Berlin",
              "ISSUER_NAME": "Example Functions Ltd", "MAIL_BCC": "archive@example.com"})
    assert s.smtp_url == "smtp+starttls://u:p@smtp.example:587"
    assert s.issuer_address == ("1 Cloud Street", "10115 Berlin")
    assert (s.issuer_name, s.mail_bcc, s.mail_reply_to) == (
        "Example Functions Ltd", "archive@example.com", None)
    assert load({"SECRETS_DIR": str(tmp_path), "SMTP_URL": "smtp://sink:2525"}
                ).smtp_url == "smtp://sink:2525"
    with pytest.raises(ConfigError, match="SEND_CLAIM_TIMEOUT_SECONDS"):
        load({"SECRETS_DIR": str(tmp_path),
              "SEND_CLAIM_TIMEOUT_SECONDS": "0"}).send_claim_timeout_s


def test_a_function_serves_when_another_functions_variable_is_unusable():
    """email-invoice's bad SMTP_TIMEOUT_SECONDS does not stop receive-usage, which never
    reads it; the setting itself refuses to be read, naming the variable."""
    settings = load({"SMTP_TIMEOUT_SECONDS": "soon", "MAX_BODY_BYTES": "1024"})
    assert settings.max_body_bytes == 1024
    with pytest.raises(ConfigError, match="SMTP_TIMEOUT_SECONDS='soon': expected an integer"):
        settings.smtp_timeout_s


@pytest.mark.parametrize("variable, attribute", [
    ("DB_POOL_MAX", "db_pool_max"), ("DB_CONNECT_TIMEOUT", "db_connect_timeout_s"),
    ("MAX_GAP_SECONDS", "max_gap_seconds"), ("KUBE_PAGE_SIZE", "kube_page_size"),
    ("MAX_BODY_BYTES", "max_body_bytes"), ("SMTP_TIMEOUT_SECONDS", "smtp_timeout_s"),
    ("REQUEUE_MINUTES", "requeue_minutes"), ("WEBHOOK_RETENTION_DAYS", "webhook_retention_days"),
    ("SEND_CLAIM_TIMEOUT_SECONDS", "send_claim_timeout_s")])
@pytest.mark.parametrize("value", ["0", "-3"])
def test_positive_integer_settings_refuse_zero_and_negatives(variable, attribute, value):
    with pytest.raises(ConfigError, match=f"{variable}={value}: expected a positive integer"):
        getattr(load({variable: value}), attribute)


def test_the_webhook_secret_is_read_as_stored(tmp_path):
    (tmp_path / "webhook-secret").write_text("key\n")
    assert load({"SECRETS_DIR": str(tmp_path)}).webhook_secret == "key\n"
