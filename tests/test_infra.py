"""Infrastructure as code: Bicep parses, settings come from one list, roles and WORM are right,
`send` builds correct batches, `doctor` checks a deployment."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from azure.eventhub import EventDataBatch

from pipeline.cli import send as publish
from pipeline.cli.main import main
from pipeline.settings import SETTINGS, azure_defaults

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra"
sys.path.insert(0, str(INFRA))
import validate  # noqa: E402  (infra/validate.py)


def parsed(path: str) -> dict[str, Any]:
    from pycep import BicepParser

    return BicepParser().parse(file_path=INFRA / path)


def test_every_bicep_file_parses_and_the_policy_xml_is_well_formed() -> None:
    assert len(validate.bicep_files()) >= 9
    assert validate.parse_bicep() == []
    assert validate.parse_xml() == []


def test_app_settings_come_from_the_one_list() -> None:
    assert orjson.loads((INFRA / "app-settings.json").read_bytes()) == azure_defaults(), (
        "stale: python -m pipeline settings --write"
    )
    function = (INFRA / "modules" / "function.bicep").read_text()
    assert "loadJsonContent('../app-settings.json')" in function
    deployed = function[function.index("var deployed = {") : function.index("var settings =")]
    for s in SETTINGS:
        name = s.name if s.azure is None else s.azure
        if name == "":
            continue  # not taken in Azure (FUNCTIONS_WORKER_RUNTIME on Flex Consumption)
        if s.scope == "host" or name in ("AUDIT_STORAGE_ACCOUNT", s.name if s.azure else None):
            assert re.search(rf"^\s*{re.escape(name)}:", deployed, re.M), (
                f"{name} not set by function.bicep"
            )
        else:
            assert name in azure_defaults(), name


def test_names_agree_across_code_bicep_and_the_emulator() -> None:
    main_bicep = (INFRA / "main.bicep").read_text()
    defaults = {s.name: s.default for s in SETTINGS}
    assert f"var hubName = '{defaults['EVENTHUB_NAME']}'" in main_bicep
    assert f"var consumerGroup = '{defaults['EVENTHUB_CONSUMER_GROUP']}'" in main_bicep
    emulator = json.loads((INFRA / "local" / "Config.json").read_text())
    (entity,) = emulator["UserConfig"]["NamespaceConfig"][0]["Entities"]
    assert entity["Name"] == defaults["EVENTHUB_NAME"]
    assert entity["ConsumerGroups"] == [{"Name": defaults["EVENTHUB_CONSUMER_GROUP"]}]
    compose = (INFRA / "local" / "docker-compose.yml").read_text()
    assert "eventhubs-emulator" in compose and "azurite:3.35.0" in compose


ROLE_IDS = {  # platform.md
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "Storage Blob Data Contributor",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "a638d3c7-ab3a-418d-83e6-5f17a39d4fde": "Azure Event Hubs Data Receiver",
    "2b629674-e913-4c01-ae53-ef4638d8f975": "Azure Event Hubs Data Sender",
    "12338af0-0e69-4776-bea7-57ae8d297424": "Key Vault Crypto User",
}


def test_least_roles_with_the_right_ids() -> None:
    function = (INFRA / "modules" / "function.bicep").read_text()
    assert "eventHubsDataReceiver: 'a638d3c7-ab3a-418d-83e6-5f17a39d4fde'" in function
    assert "2b629674" not in function  # the function never sends
    assert "storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'" in function
    sender = (INFRA / "modules" / "apim-sender.bicep").read_text()
    assert "var eventHubsDataSender = '2b629674-e913-4c01-ae53-ef4638d8f975'" in sender
    # The owner role is only on the Function's own host storage, never on the audit account.
    owner_scopes = re.findall(
        r"scope: (\w+)\n\s+name: guid\(\w+\.id, site\.id, roles\.storageBlobDataOwner", function
    )
    assert owner_scopes == ["hostStorage"]
    others = ("capture-writer.bicep", "keyvault-crypto-user.bicep")
    for text in (function, sender, *((INFRA / "modules" / m).read_text() for m in others)):
        for role in re.findall(
            r"'([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})'", text
        ):
            assert role in ROLE_IDS or role == "3913510d-42f4-4e42-8a64-420c390055eb", role


def test_archive_is_worm_and_keys_are_off() -> None:
    storage = parsed("modules/storage.bicep")["resources"]
    account = storage["account"]["config"]["properties"]
    assert account["allowSharedKeyAccess"] is False and account["allowBlobPublicAccess"] is False
    assert storage["blobService"]["config"]["properties"]["isVersioningEnabled"] is True
    archive = storage["archive"]["config"]["properties"]
    assert archive["immutableStorageWithVersioning"] == {"enabled": True}
    retention = storage["archiveRetention"]["config"]
    assert retention["name"] == "default"
    assert "immutableStorageWithVersioning" not in storage["deadletters"]["config"]["properties"]
    function = parsed("modules/function.bicep")["resources"]
    assert function["hostStorage"]["config"]["properties"]["allowSharedKeyAccess"] is False
    site = function["site"]["config"]
    assert site["identity"] == {"type": "SystemAssigned"}
    runtime = site["properties"]["functionAppConfig"]["runtime"]
    assert runtime == {"name": "python", "version": "3.11"}


def test_archive_kek_is_an_rsa_key_in_a_purge_protected_vault() -> None:
    vault = parsed("modules/keyvault.bicep")["resources"]
    props = vault["vault"]["config"]["properties"]
    assert vault["vault"]["type"] == "Microsoft.KeyVault/vaults"
    assert props["enableRbacAuthorization"] is True
    assert props["enableSoftDelete"] is True and props["enablePurgeProtection"] is True
    (kek,) = [r for r in vault.values() if r["type"] == "Microsoft.KeyVault/vaults/keys"]
    key = kek["config"]["properties"]
    assert key["kty"] == "RSA" and key["keySize"] >= 3072
    assert sorted(key["keyOps"]) == ["unwrapKey", "wrapKey"]
    keyvault = (INFRA / "modules" / "keyvault.bicep").read_text()
    assert "output keyUri string = kek.properties.keyUri" in keyvault
    # The Function's identity, on the key only, after the Function exists (no cycle).
    user = parsed("modules/keyvault-crypto-user.bicep")
    assert user["variables"]["keyVaultCryptoUser"]["value"] == (
        "12338af0-0e69-4776-bea7-57ae8d297424"
    )
    assignment = user["resources"]["cryptoUser"]["config"]
    assert assignment["scope"] == "kek"
    assert assignment["properties"]["principalId"] == "principalId"
    main_bicep = (INFRA / "main.bicep").read_text()
    assert "param archiveEncryption bool = true" in main_bicep
    assert "kekUri: archiveEncryption ? keyVault.outputs.keyUri : ''" in main_bicep
    assert "principalId: function.outputs.principalId" in main_bicep
    assert main_bicep.index("module keyVault") < main_bicep.index("module function")
    assert main_bicep.index("module function") < main_bicep.index("module kekUser")
    function = (INFRA / "modules" / "function.bicep").read_text()
    deployed = function[function.index("var deployed = {") : function.index("var settings =")]
    assert "ARCHIVE_ENCRYPTION: archiveEncryption ? 'on' : 'off'" in deployed
    assert "ARCHIVE_KEK: archiveEncryption ? 'keyvault:${kekUri}' : ''" in deployed
    # Private networking reaches the vault like the other services.
    assert "'privatelink.vaultcore.azure.net'" in (INFRA / "modules" / "network.bicep").read_text()
    endpoints = (INFRA / "modules" / "private-endpoints.bicep").read_text()
    assert "group: 'vault', zone: keyVaultZoneId" in endpoints
    # Its wrapped data keys and the legal holds live in tables Bicep creates.
    tables = {
        r["config"]["name"]
        for r in parsed("modules/storage.bicep")["resources"].values()
        if r["type"] == "Microsoft.Storage/storageAccounts/tableServices/tables"
    }
    assert {"archiveKeysTable", "legalHoldsTable"} <= tables
    assert "archiveKeysTable: defaults.ARCHIVE_KEYS_TABLE" in main_bicep
    assert "legalHoldsTable: defaults.LEGAL_HOLDS_TABLE" in main_bicep


def test_apim_wiring_streams_both_categories_and_uses_the_policy_files() -> None:
    apim = (INFRA / "modules" / "apim.bicep").read_text()
    assert "category: 'GatewayLogs'" in apim and "category: 'GatewayLlmLogs'" in apim
    assert "loggerType: 'azureEventHub'" in apim and "name: 'aoai-audit-logger'" in apim
    assert "loadTextContent('../apim/aoai-audit-fragment.xml')" in apim
    assert "largeLanguageModel" in apim and "eventHubAuthorizationRuleId" in apim
    fragment = (INFRA / "apim" / "aoai-audit-fragment.xml").read_text()
    assert 'logger-id="aoai-audit-logger"' in fragment
    policy = (INFRA / "apim" / "aoai-audit-policy.xml").read_text()
    assert 'fragment-id="aoai-audit-log"' in policy and "name: 'aoai-audit-log'" in apim
    rules = (INFRA / "modules" / "eventhubs.bicep").read_text()
    assert "'Manage'" in rules and "'Send'" in rules and "'Listen'" in rules


class Recorder:
    def __init__(self) -> None:
        self.sent: list[EventDataBatch] = []

    def create_batch(self, *, partition_key: str | None = None) -> EventDataBatch:
        return EventDataBatch(max_size_in_bytes=64 * 1024, partition_key=partition_key)

    def send_batch(self, batch: EventDataBatch) -> None:
        self.sent.append(batch)

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def test_send_publishes_the_samples_in_full_batches(
    monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    recorder = Recorder()
    seen: dict[str, Any] = {}

    def producer_for(hub: str, connection: str | None, namespace: str | None) -> Recorder:
        seen.update(hub=hub, connection=connection, namespace=namespace)
        return recorder

    monkeypatch.setattr(publish, "producer_for", producer_for)
    samples = ROOT / "samples"
    lines = sum(
        1 for f in samples.glob("*.jsonl") for line in f.read_bytes().splitlines() if line.strip()
    )
    code = main(["send", str(samples), "--settings", str(ROOT / "local.settings.sample.json")])
    assert code == 0
    assert seen["hub"] == "apim-logs" and "UseDevelopmentEmulator=true" in seen["connection"]
    assert sum(len(b) for b in recorder.sent) == lines
    assert all(b.size_in_bytes <= 64 * 1024 for b in recorder.sent)
    assert len(recorder.sent) >= 3  # the samples do not fit in one 64 KB batch
    assert f"sent {lines} events in {len(recorder.sent)} batches" in capsys.readouterr().out


def test_doctor_passes_on_azurite_except_immutability(azurite, capsys) -> None:
    from pipeline.settings import Config
    from pipeline.store.account import Store

    Store(Config(storage_connection=azurite.connection_string)).ensure()  # the default names
    code = main(
        [
            "doctor",
            "--settings",
            str(ROOT / "local.settings.sample.json"),
            "--storage",
            azurite.connection_string,
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    lines = [line for line in out.splitlines() if line[:4] in ("PASS", "FAIL", "WARN")]
    assert len(lines) >= 12
    warns = [line for line in lines if not line.startswith("PASS")]
    assert warns == [
        "WARN  container audit-raw is immutable (WORM): not verifiable: Azurite does not "
        "implement immutability",
        "WARN  archive retention is at least 180 days: not verifiable: Azurite does not "
        "implement immutability",
    ]


@pytest.mark.parametrize(
    ("days", "status"), [(90, "warn"), (179, "warn"), (180, "pass"), (365, "pass")]
)
def test_doctor_warns_when_the_archive_retention_is_under_six_months(
    days, status, monkeypatch
) -> None:
    """The retention is read from an archive blob's immutability policy (its expiry minus its
    creation), as the data plane shows it."""
    import types
    from datetime import UTC, datetime, timedelta

    from pipeline.cli import doctor

    created = datetime(2025, 11, 3, 9, tzinfo=UTC)
    props = types.SimpleNamespace(
        creation_time=created,
        immutability_policy=types.SimpleNamespace(expiry_time=created + timedelta(days=days)),
    )
    blob = types.SimpleNamespace(name="2025/11/03/09/abc.jsonl.gz")
    archive = types.SimpleNamespace(
        list_blobs=lambda **_: iter([blob]),
        get_blob_client=lambda name: types.SimpleNamespace(get_blob_properties=lambda: props),
    )
    monkeypatch.setattr(doctor, "is_azurite", lambda store: False)
    check = doctor._retention(types.SimpleNamespace(archive=archive))
    assert check.status == status and str(days) in check.detail


def test_doctor_reports_missing_pieces(cfg, monkeypatch, capsys) -> None:
    from pipeline.cli.azurite import connection_string, free_port

    port = free_port()
    env = {"AUDIT_STORAGE_CONNECTION": connection_string(port, port, port)}
    from pipeline.cli import doctor
    from pipeline.store.account import Store

    checks = doctor.run(env, make_store=lambda c: Store(c, retry_total=0))
    text = "\n".join(c.line() for c in checks)
    assert "FAIL  host storage setting" in text and "FAIL  Event Hub connection setting" in text
    assert "FAIL  audit storage reachable" in text


def test_the_timer_rolls_up_every_day_the_hub_still_holds() -> None:
    """The timer rolled up yesterday and the 2 days before: a backlog of the Event Hub's 7
    days (an outage, a stopped app) landed in rows of days never rolled up again, which
    KPIs, chargeback and budgets missed without a word (black-box audit)."""
    import re

    from pipeline.settings import Config

    bicep = (INFRA / "main.bicep").read_text()
    (retention,) = re.findall(r"param eventHubRetentionDays int = (\d+)", bicep)
    assert Config().kpi_reroll_days + 1 >= int(retention)
