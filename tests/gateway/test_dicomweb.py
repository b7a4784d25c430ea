"""DICOMweb on the web app: QIDO-RS finds what storescu sent, WADO-RS returns it byte for byte,
STOW-RS stores through the C-STORE intake, and nobody anonymous gets in."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydicom import dcmread, uid
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, generate_frames
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway.service import Gateway
from radraft.db import session_scope
from radraft.dicomweb_paths import instance_url
from radraft.enums import AuditAction, Role
from radraft.models import AuditEntry, Instance, Study
from radraft.settings import Settings
from radraft.synthetic import SyntheticPatient, make_chest_study
from radraft_cli.web_app import web_app
from reporting.users import create_user
from tests.dicom_peers import storescu, write_study
from tests.dicomweb_support import TOKEN_HEADERS, dataset_bytes, parts_of, payloads, stow_body
from tests.hostile_files import element_flood, nested_sequences, pixel_bomb, rle_image
from tests.reporting.web_support import PASSWORD, login
from tests.support import traced_peak, wait_until

DICOM_JSON = "application/dicom+json"


def value(dataset: dict[str, Any], tag: str) -> Any:
    """The first value of an element of a DICOM JSON data set (None if it has none)."""
    values = dataset.get(tag, {}).get("Value")
    return values[0] if values else None


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(web_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def sent(
    running_gateway: Gateway, session_factory: sessionmaker[Session], tmp_path: Path
) -> list[Path]:
    """A PA + lateral study from patient DW-1 on 2024-03-15, sent by dcmtk's storescu."""
    study = make_chest_study(
        501, rows=64, columns=64, patient=SyntheticPatient(patient_id="DW-1", name="Web^Dora")
    )
    for dataset in study:
        dataset.StudyDate = "20240315"
    files = write_study(study, tmp_path / "sent")
    assert storescu(files, port=running_gateway.port)

    def stored() -> bool:
        with session_scope(session_factory) as session:
            return len(session.scalars(select(Instance)).all()) == len(files)

    wait_until(stored, what="both instances stored")
    return files


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_qido_finds_the_study_by_patient_date_range_and_modality(
    client: TestClient, sent: list[Path]
) -> None:
    study_uid = str(dcmread(sent[0]).StudyInstanceUID)

    def search(**query: str) -> list[dict[str, Any]]:
        response = client.get("/dicomweb/studies", params=query, headers=TOKEN_HEADERS)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith(DICOM_JSON)
        found: list[dict[str, Any]] = response.json()
        return found

    (match,) = search(PatientID="DW-1", StudyDate="20240301-20240331", ModalitiesInStudy="DX")
    assert value(match, "0020000D") == study_uid
    assert value(match, "00100010") == {"Alphabetic": "Web^Dora"}
    assert value(match, "00201208") == 2, "NumberOfStudyRelatedInstances"
    assert match["00080061"]["Value"] == ["DX"]
    assert value(match, "00081190").endswith(f"/dicomweb/studies/{study_uid}")
    assert search(PatientID="DW-*", StudyDate="-20240315")
    assert search(PatientName="web^d*")  # person names match case-insensitively
    assert search(PatientID="DW-2") == []
    assert search(StudyDate="20240316-") == []
    assert search(ModalitiesInStudy="CT,MR") == []
    assert search(**{"00100020": "DW-1"}), "keys by tag work as by keyword"

    series = client.get(f"/dicomweb/studies/{study_uid}/series", headers=TOKEN_HEADERS).json()
    assert len(series) == 2
    instances = client.get(f"/dicomweb/studies/{study_uid}/instances", headers=TOKEN_HEADERS)
    assert {value(i, "00080018") for i in instances.json()} == {
        str(dcmread(path).SOPInstanceUID) for path in sent
    }
    ignored = client.get("/dicomweb/studies", params={"PatientWeight": "70"}, headers=TOKEN_HEADERS)
    assert ignored.status_code == 200
    assert "PatientWeight" in ignored.headers["warning"]
    bad = client.get("/dicomweb/studies", params={"StudyDate": "2024-03-15"}, headers=TOKEN_HEADERS)
    assert bad.status_code == 400


@pytest.mark.parametrize("backend", ["sqlite"])
def test_wado_returns_every_instance_byte_identical_with_metadata_frames_and_rendered(
    client: TestClient, sent: list[Path], session_factory: sessionmaker[Session]
) -> None:
    first = dcmread(sent[0])
    study_uid = str(first.StudyInstanceUID)
    response = client.get(f"/dicomweb/studies/{study_uid}", headers=TOKEN_HEADERS)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(
        'multipart/related; type="application/dicom"'
    )
    parts = parts_of(response.content, response.headers["content-type"])
    returned = {str(dcmread(_bytes_file(payload)).SOPInstanceUID): payload for _, payload in parts}
    assert len(returned) == len(sent)
    for path in sent:
        sop = str(dcmread(path).SOPInstanceUID)
        assert dataset_bytes(returned[sop]) == dataset_bytes(path.read_bytes()), "byte-identical"

    instance = (
        f"/dicomweb/studies/{study_uid}/series/{first.SeriesInstanceUID}"
        f"/instances/{first.SOPInstanceUID}"
    )
    metadata = client.get(f"{instance}/metadata", headers=TOKEN_HEADERS)
    assert metadata.status_code == 200
    assert metadata.headers["content-type"].startswith(DICOM_JSON)
    (header,) = metadata.json()
    assert value(header, "00100020") == "DW-1"
    assert value(header, "00080018") == str(first.SOPInstanceUID)
    assert value(header, "00280010") == 64, "Rows"
    assert "7FE00010" not in header, "pixel data is fetched as frames"

    frames = client.get(f"{instance}/frames/1", headers=TOKEN_HEADERS)
    assert frames.status_code == 200
    ((frame_type, frame),) = parts_of(frames.content, frames.headers["content-type"])
    assert frame_type.startswith("application/octet-stream")
    assert frame == first.PixelData
    assert client.get(f"{instance}/frames/2", headers=TOKEN_HEADERS).status_code == 404
    repeated = client.get(f"{instance}/frames/1,1", headers=TOKEN_HEADERS)
    assert repeated.status_code == 400, "a list longer than the frames would multiply the work"

    rendered = client.get(f"{instance}/rendered", headers={**TOKEN_HEADERS, "Accept": "image/png"})
    assert rendered.status_code == 200
    assert rendered.content.startswith(b"\x89PNG")
    jpeg = client.get(
        f"{instance}/rendered",
        params={"viewport": "32,32", "window": "2000,4000,linear"},
        headers=TOKEN_HEADERS,
    )
    assert jpeg.content.startswith(b"\xff\xd8")
    jpeg_only = (
        'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50'
    )
    refused = client.get(
        f"/dicomweb/studies/{study_uid}", headers={**TOKEN_HEADERS, "Accept": jpeg_only}
    )
    assert refused.status_code == 406, "radraft does not transcode"

    with session_scope(session_factory) as session:
        actions = set(
            session.scalars(select(AuditEntry.action).where(AuditEntry.object_id == study_uid))
        )
    assert {AuditAction.DICOMWEB_RETRIEVE.value} <= {str(action) for action in actions}


def stowed(client: TestClient, datasets: list[Dataset], folder: Path) -> list[str]:
    """Store the datasets over STOW-RS; their WADO-RS instance paths, in order."""
    body, content_type = stow_body(write_study(datasets, folder))
    stored = client.post("/dicomweb/studies", content=body,
                         headers={**TOKEN_HEADERS, "Content-Type": content_type})  # fmt: skip
    assert stored.status_code == 200, stored.text
    return [
        instance_url("/dicomweb", d.StudyInstanceUID, d.SeriesInstanceUID, d.SOPInstanceUID)
        for d in datasets
    ]


@pytest.mark.parametrize("backend", ["sqlite"])
def test_wado_decodes_compressed_frames_one_by_one_and_refuses_an_oversized_frame(
    client: TestClient, tmp_path: Path
) -> None:
    frames = np.stack([np.full((16, 24), 300 * n, dtype=np.uint16) for n in range(1, 4)])
    frames[:, :4, :] += np.arange(24, dtype=np.uint16)
    multi, bomb = rle_image(frames, seed=505), pixel_bomb(16384, seed=506)
    multi_url, bomb_url = stowed(client, [multi, bomb], tmp_path / "compressed")
    answer = client.get(f"{multi_url}/frames/3,1", headers=TOKEN_HEADERS)
    assert answer.status_code == 200, answer.text
    returned = payloads(answer)
    assert returned == [frames[2].tobytes(), frames[0].tobytes()], "decoded, in the order asked"
    as_stored = client.get(f"{multi_url}/frames/2,3", headers={**TOKEN_HEADERS, "Accept": (
        'multipart/related; type="application/octet-stream"; transfer-syntax=*')})  # fmt: skip
    assert as_stored.status_code == 200, as_stored.text
    stored_frames = list(generate_frames(multi.PixelData, number_of_frames=3))
    assert payloads(as_stored) == stored_frames[1:], "passed through as encoded"
    for endpoint in ("frames/1", "rendered"):
        refused = client.get(f"{bomb_url}/{endpoint}", headers=TOKEN_HEADERS)
        assert refused.status_code == 422, endpoint
        assert "too large to decode" in refused.text


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("encapsulated", [False, True], ids=["native", "encapsulated"])
def test_wado_reads_only_the_frames_asked_for_from_a_large_multi_frame_instance(
    client: TestClient, tmp_path: Path, encapsulated: bool
) -> None:
    """64 frames of 512 x 512 (32 MiB of Pixel Data); a list naming frames again and again
    still costs one frame at a time (tracemalloc sees the test client's copy of the response
    too: three frames, 1.5 MiB)."""
    frames = [np.full((512, 512), 40 * n, dtype=np.uint16) for n in range(64)]
    for number, frame in enumerate(frames):
        frame[:8, :] = number  # each frame distinct in its first rows
    (dataset,) = make_chest_study(507, rows=512, columns=512, views=("PA",))
    dataset.NumberOfFrames = 64
    if encapsulated:
        # Passed through as stored, so the fragments need not be valid RLE to be served.
        dataset.PixelData = encapsulate([frame.tobytes() for frame in frames])
        dataset["PixelData"].VR = "OB"
        dataset.file_meta.TransferSyntaxUID = uid.RLELossless
        accept = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
    else:
        dataset.PixelData = b"".join(frame.tobytes() for frame in frames)
        accept = 'multipart/related; type="application/octet-stream"'
    (url,) = stowed(client, [dataset], tmp_path / "stack")
    asked = [5, 64, 5]
    frames_url = f"{url}/frames/{','.join(map(str, asked))}"
    answer, peak = traced_peak(
        lambda: client.get(frames_url, headers={**TOKEN_HEADERS, "Accept": accept})
    )
    assert answer.status_code == 200, answer.text
    returned = payloads(answer)
    assert returned == [frames[number - 1].tobytes() for number in asked]
    assert peak < 8 << 20, f"peak {peak >> 20} MiB for three 0.5 MiB frames of a 32 MiB file"


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("syntax", [uid.ExplicitVRLittleEndian, uid.ImplicitVRLittleEndian])
def test_wado_metadata_names_a_large_private_value_without_reading_it(
    client: TestClient, tmp_path: Path, syntax: uid.UID
) -> None:
    """A 24 MiB private blob in the header is left in the file by metadata and streamed by its
    BulkDataURI; a 4 KiB one goes the same way from memory; native Pixel Data too."""
    (dataset,) = make_chest_study(508, rows=64, columns=64, views=("PA",))
    blob = np.arange(24 << 20, dtype=np.uint32).astype(np.uint8).tobytes()
    small = bytes(range(256)) * 16
    dataset.private_block(0x0009, "RADRAFT TEST", create=True).add_new(0x01, "OB", blob)
    dataset.private_block(0x0009, "RADRAFT TEST").add_new(0x02, "OB", small)
    dataset.file_meta.TransferSyntaxUID = syntax
    (url,) = stowed(client, [dataset], tmp_path / "blob")
    answer, peak = traced_peak(lambda: client.get(f"{url}/metadata", headers=TOKEN_HEADERS))
    assert answer.status_code == 200, answer.text
    (header,) = answer.json()
    assert peak < 8 << 20, f"peak {peak >> 20} MiB for the metadata of a 24 MiB header"
    for tag, value_bytes in (("00091001", blob), ("00091002", small)):
        assert header[tag]["vr"] in ("OB", "UN"), header[tag]
        assert set(header[tag]) == {"vr", "BulkDataURI"}, header[tag]
        fetched = client.get(header[tag]["BulkDataURI"], headers=TOKEN_HEADERS)
        assert fetched.status_code == 200, fetched.text
        (payload,) = payloads(fetched)
        assert payload == value_bytes, tag
    pixels = client.get(f"{url}/bulkdata/7FE00010", headers=TOKEN_HEADERS)
    (payload,) = payloads(pixels)
    assert payload == dataset.PixelData
    assert client.get(f"{url}/bulkdata/00100010", headers=TOKEN_HEADERS).status_code == 404


def icon_item(side: int, seed: int) -> Dataset:
    """An Icon Image Sequence item (PS3.3 C.7.6.1.1.6): an 8-bit thumbnail of its own."""
    icon = Dataset()
    icon.Rows = icon.Columns = side
    icon.SamplesPerPixel = 1
    icon.PhotometricInterpretation = "MONOCHROME2"
    icon.BitsAllocated = icon.BitsStored = 8
    icon.HighBit = 7
    icon.PixelRepresentation = 0
    icon.PixelData = np.random.default_rng(seed).integers(0, 256, side * side, np.uint8).tobytes()
    return icon


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("syntax", [uid.ExplicitVRLittleEndian, uid.ImplicitVRLittleEndian])
def test_wado_names_binary_values_inside_sequences_by_their_own_path(
    client: TestClient, tmp_path: Path, syntax: uid.UID
) -> None:
    """An icon's Pixel Data inside Icon Image Sequence, and one two sequences deep, each get a
    BulkDataURI that returns that value (pydicom's own naming, by tag, served the image's)."""
    (dataset,) = make_chest_study(509, rows=64, columns=64, views=("PA",))
    dataset.IconImageSequence = [icon_item(32, seed=1), icon_item(48, seed=2)]
    referenced = Dataset()
    referenced.ReferencedSOPClassUID = dataset.SOPClassUID
    referenced.ReferencedSOPInstanceUID = "1.2.3.4"
    referenced.IconImageSequence = [icon_item(40, seed=3)]
    dataset.ReferencedImageSequence = [referenced]
    dataset.file_meta.TransferSyntaxUID = syntax
    (url,) = stowed(client, [dataset], tmp_path / "nested")
    answer = client.get(f"{url}/metadata", headers=TOKEN_HEADERS)
    assert answer.status_code == 200, answer.text
    (header,) = answer.json()

    def fetched(element: dict[str, Any]) -> bytes:
        assert set(element) == {"vr", "BulkDataURI"}, element
        response = client.get(element["BulkDataURI"], headers=TOKEN_HEADERS)
        assert response.status_code == 200, response.text
        (payload,) = payloads(response)
        return payload

    icons = header["00880200"]["Value"]
    assert [fetched(icon["7FE00010"]) for icon in icons] == [
        icon.PixelData for icon in dataset.IconImageSequence
    ]
    assert icons[1]["7FE00010"]["BulkDataURI"].endswith(f"{url}/bulkdata/00880200/2/7FE00010")
    (referenced_json,) = header["00081140"]["Value"]
    (deep_icon,) = referenced_json["00880200"]["Value"]
    assert fetched(deep_icon["7FE00010"]) == referenced.IconImageSequence[0].PixelData
    assert fetched({"vr": "OB", "BulkDataURI": f"{url}/bulkdata/7FE00010"}) == dataset.PixelData

    for wrong, status in (
        ("00880200/3/7FE00010", 404),  # two icons only
        ("00880200/1", 400),  # an item is not a value
        ("00880200", 404),  # a sequence is not bulk data
        ("00880200/1/00280010", 404),  # Rows: not binary
        ("00880200/0/7FE00010", 400),  # items count from 1
        ("00880200/x/7FE00010", 400),
        ("/".join(["00880200/1"] * 40 + ["7FE00010"]), 400),  # deeper than any stored file
    ):
        response = client.get(f"{url}/bulkdata/{wrong}", headers=TOKEN_HEADERS)
        assert response.status_code == status, (wrong, response.text)


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("defined_lengths", [False, True], ids=["delimited", "defined"])
def test_wado_answers_404_for_a_stored_file_nested_too_deep_to_read(
    client: TestClient,
    settings: Settings,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
    defined_lengths: bool,
) -> None:
    """A file stored before the intake walked defined-length sequences may nest thousands of
    levels deep, and pydicom recurses past Python's limit on it: WADO-RS says so (404 with the
    reason), not a 500, and still returns the file as it was stored."""
    shallow = nested_sequences(tmp_path / "shallow", depth=1, seed=909)
    deep = nested_sequences(tmp_path / "deep", depth=3000, defined_lengths=defined_lengths,
                            seed=909)  # fmt: skip
    header = dcmread(shallow)
    (url,) = stowed(client, [header], tmp_path / "stow")
    with session_scope(session_factory) as session:
        relative = session.scalars(select(Instance.spool_path)).one()
    (settings.spool_dir / relative).write_bytes(deep.read_bytes())  # as stored before the walk
    metadata = client.get(f"{url}/metadata", headers=TOKEN_HEADERS)
    assert metadata.status_code == 404, metadata.text
    assert "cannot be read: sequences nested deeper than 32 levels" in metadata.text
    for endpoint in ("frames/1", "bulkdata/00100010"):
        assert client.get(f"{url}/{endpoint}", headers=TOKEN_HEADERS).status_code == 404
    whole = client.get(url, headers=TOKEN_HEADERS)
    (payload,) = payloads(whole)
    assert payload == deep.read_bytes()


def _bytes_file(payload: bytes) -> Any:
    import io

    return io.BytesIO(payload)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_stow_stores_through_the_intake_and_a_truncated_part_fails_storing_nothing(
    client: TestClient, session_factory: sessionmaker[Session], settings: Settings, tmp_path: Path
) -> None:
    files = write_study(make_chest_study(502, rows=64, columns=64), tmp_path / "stow")
    body, content_type = stow_body(files)
    response = client.post("/dicomweb/studies", content=body,
                           headers={**TOKEN_HEADERS, "Content-Type": content_type})  # fmt: skip
    assert response.status_code == 200, response.text
    answer = response.json()
    assert len(answer["00081199"]["Value"]) == 2, "ReferencedSOPSequence"
    assert "00081198" not in answer
    with session_scope(session_factory) as session:
        stored = {i.sop_instance_uid: i for i in session.scalars(select(Instance))}
        assert {i.calling_ae_title for i in stored.values()} == {"STOW-RS"}
        assert all(i.is_chest for i in stored.values()), "classified like a C-STORE image"
    for path in files:
        sop = str(dcmread(path).SOPInstanceUID)
        spooled = settings.spool_dir / stored[sop].spool_path
        assert spooled.read_bytes() == path.read_bytes(), "the posted file, byte for byte"

    other = write_study(make_chest_study(503, rows=64, columns=64), tmp_path / "cut")
    body, content_type = stow_body(other, cut_last_part_to=2000)
    response = client.post("/dicomweb/studies", content=body,
                           headers={**TOKEN_HEADERS, "Content-Type": content_type})  # fmt: skip
    assert response.status_code == 202, response.text
    answer = response.json()
    (failed,) = answer["00081198"]["Value"]
    assert value(failed, "00081197") == 0xC000, "FailureReason: cannot understand"
    assert len(answer["00081199"]["Value"]) == 1
    cut_sop = str(dcmread(other[-1]).SOPInstanceUID)
    with session_scope(session_factory) as session:
        assert session.scalar(select(Instance).where(Instance.sop_instance_uid == cut_sop)) is None
    assert not any((settings.data_dir / "incoming").iterdir()), "nothing left behind"

    body, content_type = stow_body(files)
    wrong_study = client.post(
        "/dicomweb/studies/1.2.3.4", content=body,
        headers={**TOKEN_HEADERS, "Content-Type": content_type},
    )  # fmt: skip
    assert wrong_study.status_code == 409
    assert {value(item, "00081197") for item in wrong_study.json()["00081198"]["Value"]} == {0xA900}
    not_multipart = client.post(
        "/dicomweb/studies", content=files[0].read_bytes(),
        headers={**TOKEN_HEADERS, "Content-Type": "application/dicom"},
    )  # fmt: skip
    assert not_multipart.status_code == 415


def assert_large_part_refused_small_part_stored(
    settings: Settings, session_factory: sessionmaker[Session], side: int, tmp_path: Path
) -> None:
    """STOW-RS of a ``side`` x ``side`` image and a small one: the large part fails 0xA700 and
    leaves nothing behind, the small one is stored."""
    (large,) = write_study(
        make_chest_study(505, rows=side, columns=side, views=("PA",)), tmp_path / "large"
    )
    (small,) = write_study(
        make_chest_study(506, rows=64, columns=64, views=("PA",)), tmp_path / "s"
    )
    body, content_type = stow_body([large, small])
    with TestClient(web_app(settings)) as client:
        response = client.post("/dicomweb/studies", content=body,
                               headers={**TOKEN_HEADERS, "Content-Type": content_type})  # fmt: skip
    assert response.status_code == 202, response.text
    answer = response.json()
    (failed,) = answer["00081198"]["Value"]
    assert value(failed, "00081197") == 0xA700, "FailureReason: out of resources"
    (stored,) = answer["00081199"]["Value"]
    assert value(stored, "00081155") == str(dcmread(small).SOPInstanceUID)
    with session_scope(session_factory) as session:
        assert len(session.scalars(select(Instance)).all()) == 1
    assert not any((settings.data_dir / "incoming").iterdir()), "nothing left behind"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_stow_refuses_a_part_past_the_instance_limit_and_stores_the_rest(
    session_factory: sessionmaker[Session], settings: Settings, tmp_path: Path
) -> None:
    """A 2 MB part past a 1 MiB instance limit."""
    settings = settings.model_copy(update={"dicom_max_instance_bytes": 1 << 20})
    assert_large_part_refused_small_part_stored(settings, session_factory, 1024, tmp_path)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_stow_on_a_disk_that_fills_up_refuses_that_part_and_stores_the_rest(
    session_factory: sessionmaker[Session], settings: Settings, small_disk: Path, tmp_path: Path
) -> None:
    """A 50 MB part on a 40 MB disk: the write fails (it used to end the request with a 500);
    that part fails 0xA700, its space is freed, and the part after it is stored."""
    settings = settings.model_copy(
        update={"data_dir": small_disk / "data", "spool_min_free_bytes": 0}
    )
    assert_large_part_refused_small_part_stored(settings, session_factory, 5000, tmp_path)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_stow_refuses_deep_nesting_and_element_floods_part_by_part(
    client: TestClient, session_factory: sessionmaker[Session], settings: Settings, tmp_path: Path
) -> None:
    # Each part is walked before pydicom reads it: undefined-length nesting 3000 deep used to
    # raise RecursionError out of the request (a 500), and a flood to be read element by element.
    hostile = [
        nested_sequences(tmp_path / "undefined", depth=3000),
        nested_sequences(tmp_path / "defined", depth=3000, defined_lengths=True),
        element_flood(tmp_path / "flood", elements=settings.dicom_max_elements + 1),
    ]
    (good,) = write_study(make_chest_study(504, rows=64, columns=64, views=("PA",)), tmp_path / "g")
    body, content_type = stow_body([*hostile, good])
    response = client.post("/dicomweb/studies", content=body,
                           headers={**TOKEN_HEADERS, "Content-Type": content_type})  # fmt: skip
    assert response.status_code == 202, response.text
    answer = response.json()
    failed = answer["00081198"]["Value"]
    assert [value(item, "00081197") for item in failed] == [0xC000] * 3, "cannot understand"
    (stored,) = answer["00081199"]["Value"]
    assert value(stored, "00081155") == str(dcmread(good).SOPInstanceUID)
    with session_scope(session_factory) as session:
        assert len(session.scalars(select(Instance)).all()) == 1
    assert not any((settings.data_dir / "incoming").iterdir()), "nothing left behind"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_stow_and_wado_refuse_anonymous_callers_and_stow_needs_the_service_token(
    client: TestClient, session_factory: sessionmaker[Session], sent: list[Path], tmp_path: Path
) -> None:
    study_uid = str(dcmread(sent[0]).StudyInstanceUID)
    for path in ("/dicomweb/studies", f"/dicomweb/studies/{study_uid}",
                 f"/dicomweb/studies/{study_uid}/metadata"):  # fmt: skip
        assert client.get(path).status_code == 401, path
        assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
    body, content_type = stow_body(sent)
    assert client.post("/dicomweb/studies", content=body,
                       headers={"Content-Type": content_type}).status_code == 401  # fmt: skip

    with session_scope(session_factory) as session:
        create_user(session, "reader1", role=Role.RESIDENT, password=PASSWORD, full_name="R")
    login(client, "reader1")
    assert client.get("/dicomweb/studies", params={"PatientID": "DW-1"}).status_code == 200
    refused = client.post("/dicomweb/studies", content=body, headers={"Content-Type": content_type})
    assert refused.status_code == 401, "a login reads; storing takes the service token"
    with session_scope(session_factory) as session:
        audited = session.scalars(
            select(AuditEntry).where(AuditEntry.action == AuditAction.DICOMWEB_QUERY)
        ).all()
    assert [entry.actor.startswith("user:") for entry in audited] == [True]
    assert json.dumps(audited[0].details).find("DW-1") == -1, "query values stay out of the audit"
    with session_scope(session_factory) as session:
        assert len(session.scalars(select(Study)).all()) == 1
