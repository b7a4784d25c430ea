"""The DICOMweb routes under ``/dicomweb``: QIDO-RS, WADO-RS and STOW-RS (PS3.18 10.4-10.6).

The app that mounts them provides ``app.state.settings`` and ``app.state.session_factory`` (the
web app does) and hands in three dependencies: ``reader`` for queries and retrieval (a login or
the service token), ``storer`` for STOW-RS (the service token) and ``database``, its
per-request session. Every request is audited with its actor.

No ``from __future__ import annotations`` here: the routes are defined inside
``dicomweb_router`` and their ``Reader``/``Storer`` annotations name that function's locals,
which FastAPI can only see if annotations are evaluated where they are written.
"""

from collections.abc import Callable, Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from gateway.dicomweb import query as qido
from gateway.dicomweb import retrieve as wado
from gateway.dicomweb.store import StowResult, store_parts
from gateway.intake import intake_for
from gateway.spool import Spool
from radraft.db import session_scope
from radraft.dicomweb_paths import study_url
from radraft.enums import AuditAction
from radraft.errors import NotAcceptableError, NotFoundError, UnsupportedMediaTypeError
from radraft.models import AuditEntry
from radraft.multipart import (
    MediaType,
    MultipartFileReader,
    OutgoingPart,
    new_boundary,
    write_multipart,
)
from radraft.settings import Settings
from radraft.timeutil import utcnow

DICOM_JSON = "application/dicom+json"
FEED_CHUNK = 1 << 20
"""Request bytes gathered before each hand-over to the parser thread."""


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _root(request: Request) -> str:
    """The DICOMweb root URLs in answers start with: the configured one, else this request's."""
    configured = _settings(request).dicomweb_base_url
    return configured or f"{str(request.base_url).rstrip('/')}/dicomweb"


def _audit(session: Session, actor: str, action: AuditAction, study: str, **details: Any) -> None:
    session.add(
        AuditEntry(
            at=utcnow(),
            actor=actor,
            action=action,
            object_type="study",
            object_id=study,
            details=details or None,
        )
    )


def _json(request: Request, body: Any, *, warnings: list[str] | None = None) -> JSONResponse:
    accept = request.headers.get("accept", "")
    entries = wado.accepted(accept)
    if entries and not any(
        entry.name in (DICOM_JSON, "application/json", "*/*", "application/*") for entry in entries
    ):
        raise NotAcceptableError(f"this resource is {DICOM_JSON}")
    headers = {}
    if warnings:
        headers["Warning"] = f'299 radraft "not supported, ignored: {", ".join(warnings)}"'
    return JSONResponse(body, media_type=DICOM_JSON, headers=headers)


def _multipart(parts: Iterator[OutgoingPart] | list[OutgoingPart], part_type: str) -> Response:
    boundary = new_boundary()
    return StreamingResponse(
        write_multipart(parts, boundary),
        media_type=f'multipart/related; type="{part_type}"; boundary={boundary}',
    )


def dicomweb_router(
    *,
    reader: Callable[..., str],
    storer: Callable[..., str],
    database: Callable[..., Iterator[Session]],
) -> APIRouter:
    """The routes, with who may read, who may store, and the app's per-request session (the
    one ``reader`` uses too: one session per request, as SQLite's write lock needs)."""
    router = APIRouter(prefix="/dicomweb", tags=["dicomweb"])
    Reader = Annotated[str, Depends(reader)]
    Storer = Annotated[str, Depends(storer)]
    Database = Annotated[Session, Depends(database)]

    def search(
        request: Request, session: Database, actor: str, level: qido.Level, **scope: str
    ) -> JSONResponse:
        parsed = qido.parse_query(list(request.query_params.multi_items()), level)
        root = _root(request)
        if level is qido.Level.STUDY:
            found = qido.find_studies(session, parsed, root)
        elif level is qido.Level.SERIES:
            found = qido.find_series(session, parsed, root, **scope)
        else:
            found = qido.find_instances(session, parsed, root, **scope)
        _audit(session, actor, AuditAction.DICOMWEB_QUERY, scope.get("study_instance_uid", "*"),
               level=level.value, keys=sorted(parsed.matches), results=len(found))  # fmt: skip
        return _json(request, found, warnings=parsed.ignored)

    @router.get("/studies", summary="QIDO-RS: search for studies")
    def search_studies(request: Request, session: Database, actor: Reader) -> Response:
        return search(request, session, actor, qido.Level.STUDY)

    @router.get("/series", summary="QIDO-RS: search for series")
    def search_all_series(request: Request, session: Database, actor: Reader) -> Response:
        return search(request, session, actor, qido.Level.SERIES)

    @router.get("/instances", summary="QIDO-RS: search for instances")
    def search_all_instances(request: Request, session: Database, actor: Reader) -> Response:
        return search(request, session, actor, qido.Level.INSTANCE)

    @router.get("/studies/{study}/series", summary="QIDO-RS: search a study's series")
    def search_series(request: Request, study: str, session: Database, actor: Reader) -> Response:
        return search(request, session, actor, qido.Level.SERIES, study_instance_uid=study)

    @router.get("/studies/{study}/instances", summary="QIDO-RS: search a study's instances")
    def search_study_instances(
        request: Request, study: str, session: Database, actor: Reader
    ) -> Response:
        return search(request, session, actor, qido.Level.INSTANCE, study_instance_uid=study)

    @router.get(
        "/studies/{study}/series/{series}/instances", summary="QIDO-RS: search a series' instances"
    )
    def search_series_instances(
        request: Request, study: str, series: str, session: Database, actor: Reader
    ) -> Response:
        return search(request, session, actor, qido.Level.INSTANCE, study_instance_uid=study,
                      series_instance_uid=series)  # fmt: skip

    def located(
        request: Request, session: Database, actor: str, study: str, *uids: str
    ) -> list[wado.StoredInstance]:
        items = wado.locate(session, _settings(request).spool_dir, study, *uids)
        _audit(session, actor, AuditAction.DICOMWEB_RETRIEVE, study,
               path=request.url.path.removeprefix(router.prefix))  # fmt: skip
        return items

    def instances_response(request: Request, items: list[wado.StoredInstance]) -> Response:
        wado.check_instances_acceptable(request.headers.get("accept"), items)
        return _multipart(wado.instance_parts(items, _root(request)), "application/dicom")

    @router.get("/studies/{study}", summary="WADO-RS: a study's instances")
    def retrieve_study(request: Request, study: str, session: Database, actor: Reader) -> Response:
        return instances_response(request, located(request, session, actor, study))

    @router.get("/studies/{study}/series/{series}", summary="WADO-RS: a series' instances")
    def retrieve_series(
        request: Request, study: str, series: str, session: Database, actor: Reader
    ) -> Response:
        return instances_response(request, located(request, session, actor, study, series))

    @router.get("/studies/{study}/series/{series}/instances/{sop}", summary="WADO-RS: an instance")
    def retrieve_instance(
        request: Request, study: str, series: str, sop: str, session: Database, actor: Reader
    ) -> Response:
        return instances_response(request, located(request, session, actor, study, series, sop))

    @router.get("/studies/{study}/metadata", summary="WADO-RS: a study's metadata")
    def study_metadata(request: Request, study: str, session: Database, actor: Reader) -> Response:
        items = located(request, session, actor, study)
        return _json(request, wado.metadata(items, _root(request)))

    @router.get("/studies/{study}/series/{series}/metadata", summary="WADO-RS: series metadata")
    def series_metadata(
        request: Request, study: str, series: str, session: Database, actor: Reader
    ) -> Response:
        items = located(request, session, actor, study, series)
        return _json(request, wado.metadata(items, _root(request)))

    @router.get(
        "/studies/{study}/series/{series}/instances/{sop}/metadata",
        summary="WADO-RS: instance metadata",
    )
    def instance_metadata(
        request: Request, study: str, series: str, sop: str, session: Database, actor: Reader
    ) -> Response:
        items = located(request, session, actor, study, series, sop)
        return _json(request, wado.metadata(items, _root(request)))

    @router.get(
        "/studies/{study}/series/{series}/instances/{sop}/frames/{frame_list}",
        summary="WADO-RS: frames",
    )
    def retrieve_frames(
        request: Request,
        study: str,
        series: str,
        sop: str,
        frame_list: str,
        session: Database,
        actor: Reader,
    ) -> Response:
        (item,) = located(request, session, actor, study, series, sop)
        numbers = wado.frame_numbers(frame_list)
        parts = wado.frames(item, numbers, request.headers.get("accept"))
        part_type = MediaType.parse(parts[0].content_type).name
        return _multipart(parts, part_type)

    @router.get(
        "/studies/{study}/series/{series}/instances/{sop}/bulkdata/{path:path}",
        summary="WADO-RS: bulk data named in metadata",
    )
    def retrieve_bulk_data(
        request: Request, study: str, series: str, sop: str, path: str, session: Database,
        actor: Reader,
    ) -> Response:  # fmt: skip
        (item,) = located(request, session, actor, study, series, sop)
        chunks = wado.bulk_data(item, path)
        return _multipart([OutgoingPart(wado.OCTET_STREAM, chunks)], wado.OCTET_STREAM)

    def rendered_response(request: Request, item: wado.StoredInstance) -> Response:
        image, media = wado.rendered(
            item,
            request.headers.get("accept"),
            viewport=request.query_params.get("viewport"),
            window=request.query_params.get("window"),
        )
        return Response(image, media_type=media, headers={"Cache-Control": "private"})

    @router.get(
        "/studies/{study}/series/{series}/instances/{sop}/rendered",
        summary="WADO-RS: an instance rendered (JPEG or PNG)",
    )
    def render_instance(
        request: Request, study: str, series: str, sop: str, session: Database, actor: Reader
    ) -> Response:
        (item,) = located(request, session, actor, study, series, sop)
        return rendered_response(request, item)

    @router.get(
        "/studies/{study}/series/{series}/instances/{sop}/frames/{frame}/rendered",
        summary="WADO-RS: the first frame rendered (JPEG or PNG)",
    )
    def render_frame(
        request: Request, study: str, series: str, sop: str, frame: int, session: Database,
        actor: Reader,
    ) -> Response:  # fmt: skip
        (item,) = located(request, session, actor, study, series, sop)
        if frame != 1:
            raise NotFoundError("radraft renders the first frame only")
        return rendered_response(request, item)

    async def stow(request: Request, actor: str, study: str | None) -> Response:
        settings = _settings(request)
        content_type = MediaType.parse(request.headers.get("content-type", ""))
        if (
            content_type.name != "multipart/related"
            or content_type.parameters.get("type", "application/dicom") != "application/dicom"
        ):
            raise UnsupportedMediaTypeError(
                'STOW-RS takes multipart/related; type="application/dicom"'
            )
        spool = Spool(settings.spool_dir, settings.data_dir / "incoming")
        reader = MultipartFileReader(
            content_type.parameters.get("boundary", ""),
            spool.incoming,
            max_part_bytes=min(settings.stow_max_bytes, settings.dicom_max_instance_bytes),
            max_parts=settings.stow_max_parts,
            min_free_bytes=settings.spool_min_free_bytes,
        )
        try:
            pending = bytearray()
            async for chunk in request.stream():
                pending += chunk
                if len(pending) >= FEED_CHUNK:
                    await run_in_threadpool(reader.feed, bytes(pending))
                    pending.clear()
            await run_in_threadpool(reader.feed, bytes(pending))
            parts = reader.finish()
            intake = intake_for(settings, request.app.state.session_factory, spool)
            result: StowResult = await run_in_threadpool(
                store_parts, parts, intake, study_instance_uid=study, root=_root(request)
            )
        finally:
            reader.close()
        with session_scope(request.app.state.session_factory) as session:
            _audit(session, actor, AuditAction.DICOMWEB_STORE, study or "*",
                   stored=len(result.stored), failed=len(result.failed))  # fmt: skip
        retrieve = study_url(_root(request), study) if study else None
        return JSONResponse(
            result.body(retrieve), status_code=result.http_status, media_type=DICOM_JSON
        )

    @router.post("/studies", summary="STOW-RS: store instances")
    async def store(request: Request, actor: Storer) -> Response:
        return await stow(request, actor, None)

    @router.post("/studies/{study}", summary="STOW-RS: store instances of one study")
    async def store_in_study(request: Request, study: str, actor: Storer) -> Response:
        return await stow(request, actor, study)

    return router
