"""Server-rendered pages: login, worklist, case (images, editor, history) and user admin.

The pages render what they show from the database and then drive everything else through the
same REST API that integrations use (``static/*.js``), so the API is the one contract.
A page for someone not logged in redirects to the login page; a role that may not see a page
gets a 403 page.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy import select

from radraft.enums import Role
from radraft.errors import NotFoundError
from radraft.image_rejection import REJECTION_TITLES
from radraft.imaging import ordered_images
from radraft.models import Instance, Report, ReportRevision, Study, User
from radraft.orders import indication_for
from reporting.reader_study.reads import EditReason, next_read, own_read, read_view
from reporting.web.deps import DbSession, RowId
from reporting.web.prior_studies import shown_priors
from reporting.web.security import audit, session_user
from reporting.web.worklist import WORKLIST_FILTERS

router = APIRouter(include_in_schema=False)
DOCUMENT_SOP_CLASS_PREFIXES = (
    "1.2.840.10008.5.1.4.1.1.88.",  # structured reports and key object selections
    "1.2.840.10008.5.1.4.1.1.11.",  # presentation states
    "1.2.840.10008.5.1.4.1.1.104.",  # encapsulated documents
)
"""Objects of a study with no image to show in the viewer."""
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")


def same_site_path(target: str, default: str = "/worklist") -> str:
    """``target`` if it is a path on this site, else ``default`` (no open redirect).

    Browsers read a backslash as a slash, so ``/\\evil.example`` means ``//evil.example``:
    another site. Backslashes are normalised first; then only a path that starts with one
    slash, has no scheme or host and no control characters is kept.
    """
    candidate = target.replace("\\", "/")
    if not candidate.startswith("/") or candidate.startswith("//"):
        return default
    if any(ord(character) < 32 or ord(character) == 127 for character in candidate):
        return default
    parts = urlsplit(candidate)
    if parts.scheme or parts.netloc:
        return default
    return candidate


def _login_redirect(request: Request) -> RedirectResponse:
    target = quote(request.url.path, safe="/")
    return RedirectResponse(f"/login?next={target}", status_code=303)


def _page(
    request: Request, name: str, user: User | None, status_code: int = 200, **context: Any
) -> HTMLResponse:
    csrf = str(request.session.get("csrf", "")) if user is not None else ""
    return templates.TemplateResponse(
        request, name, {"user": user, "csrf_token": csrf, **context}, status_code=status_code
    )


def _visitor(request: Request, session: DbSession, *roles: Role) -> User | Response:
    """The logged-in user if their role may see the page (any role when none are given);
    otherwise the response to send instead: the login page, or a 403 page."""
    user = session_user(request, session)
    if user is None:
        return _login_redirect(request)
    if roles and Role(user.role) not in roles:
        return _page(request, "forbidden.html", user, status_code=403)
    return user


@router.get("/", response_class=HTMLResponse)
def home(request: Request, session: DbSession) -> Response:
    """The worklist for a logged-in user, else the login page."""
    if session_user(request, session) is None:
        return _login_redirect(request)
    return RedirectResponse("/worklist", status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "/worklist") -> Response:
    """The login form (it posts to ``/api/login``)."""
    return _page(request, "login.html", None, next=same_site_path(next))


@router.get("/worklist", response_class=HTMLResponse)
def worklist_page(request: Request, session: DbSession) -> Response:
    """Studies with status, priority and age; the page refreshes itself from the API."""
    user = _visitor(request, session)
    if isinstance(user, Response):
        return user
    settings = request.app.state.settings
    return _page(
        request,
        "worklist.html",
        user,
        statuses=list(WORKLIST_FILTERS),
        poll_ms=int(settings.worklist_poll_seconds * 1000),
    )


@router.get("/cases/{study_instance_uid}", response_class=HTMLResponse)
def case_page(study_instance_uid: str, request: Request, session: DbSession) -> Response:
    """Images, indication, the report editor and its revision history."""
    user = _visitor(request, session)
    if isinstance(user, Response):
        return user
    study = session.scalar(select(Study).where(Study.study_instance_uid == study_instance_uid))
    if study is None:
        raise NotFoundError("unknown study")
    every_instance = session.scalars(
        select(Instance).where(Instance.study_id == study.id).order_by(Instance.id)
    ).all()
    instances = [  # what the viewer can show: images, not rejected
        instance
        for instance in every_instance
        if instance.rejected_at is None
        and not instance.sop_class_uid.startswith(DOCUMENT_SOP_CLASS_PREFIXES)
    ]
    rejected = [instance for instance in every_instance if instance.rejected_at is not None]
    report = session.scalar(
        select(Report).where(Report.study_id == study.id).order_by(Report.id.desc())
    )
    draft = None
    if report is not None:
        draft = session.scalar(
            select(ReportRevision).where(
                ReportRevision.report_id == report.id, ReportRevision.number == 1
            )
        )
        audit(session, f"user:{user.id}", "report.viewed", "report", str(report.id))
    settings = request.app.state.settings
    viewer_url = None
    if settings.viewer_url_template:
        viewer_url = settings.viewer_url_template.format(
            study_instance_uid=quote(study.study_instance_uid, safe=""),
            accession_number=quote(study.accession_number or "", safe=""),
        )
    return _page(
        request,
        "case.html",
        user,
        study=study,
        accession_shared_with_other_patient=_accession_of_other_patient(session, study),
        indication=_indication(session, study, report),
        viewer_images=[
            {"uid": image.sop_instance_uid, "label": image.view_position or f"Image {index}"}
            for index, image in enumerate(
                ordered_images(instances, lambda i: i.view_position), start=1
            )
        ],
        rejected_images=sorted(
            {REJECTION_TITLES.get(i.rejection_code or "", "rejected") for i in rejected}
        ),
        rejected_count=len(rejected),
        report=report,
        draft=draft,
        priors=shown_priors(session, study, f"user:{user.id}"),
        can_edit=Role(user.role) in (Role.RESIDENT, Role.ATTENDING) and study.withdrawn_at is None,
        viewer_url=viewer_url,
        idle_threshold_ms=int(settings.idle_threshold_seconds * 1000),
    )


@router.get("/reading", response_class=HTMLResponse)
def reading_next_page(request: Request, session: DbSession) -> Response:
    """A timing-study reader's next read, or a page saying there is none."""
    user = _visitor(request, session, Role.RESIDENT, Role.ATTENDING)
    if isinstance(user, Response):
        return user
    read = next_read(session, user)
    if read is None:
        return _page(request, "reading_done.html", user)
    return RedirectResponse(f"/reading/{read.id}", status_code=303)


@router.get("/reading/{read_id}", response_class=HTMLResponse)
def reading_page(read_id: RowId, request: Request, session: DbSession) -> Response:
    """One blinded read: images, the draft as "Draft report", then the feedback form."""
    user = _visitor(request, session)
    if isinstance(user, Response):
        return user
    view = read_view(session, own_read(session, read_id, user), user)
    settings = request.app.state.settings
    study = session.scalar(select(Study).where(Study.study_instance_uid == view.study_instance_uid))
    if study is None:
        raise NotFoundError("unknown study")
    return _page(
        request,
        "reading.html",
        user,
        read=view,
        viewer_images=[
            {"uid": uid, "label": f"Image {index}"}
            for index, uid in enumerate(view.images, start=1)
        ],
        indication=_indication(session, study),
        edit_reasons=[reason.value for reason in EditReason],
        idle_threshold_ms=int(settings.idle_threshold_seconds * 1000),
    )


@router.get("/admin/reader-studies", response_class=HTMLResponse)
def reader_studies_admin_page(request: Request, session: DbSession) -> Response:
    """Create a timing study from a YAML protocol; see progress (admins)."""
    user = _visitor(request, session, Role.ADMIN)
    if isinstance(user, Response):
        return user
    return _page(request, "reader_studies.html", user)


@router.get("/admin/users", response_class=HTMLResponse)
def users_page(request: Request, session: DbSession) -> Response:
    """Accounts: add, change role, deactivate, reset password (admins only)."""
    user = _visitor(request, session, Role.ADMIN)
    if isinstance(user, Response):
        return user
    return _page(request, "users.html", user, roles=[role.value for role in Role])


def _indication(
    session: DbSession, study: Study, report: Report | None = None
) -> list[tuple[str, str]]:
    """The indication as the model is given it now (``radraft.orders.indication_for``) and
    its source, and the one the report's newest model draft was written with where that differs
    (an order that came or changed after the draft): the reader must not think the model knew
    a question it was never asked."""
    indication = indication_for(session, study)
    shown = [(f"Indication ({indication.source})", indication.text)]
    drafted_with = _drafted_indication(session, report) if report is not None else None
    if drafted_with is not None and drafted_with != indication.text:
        shown.append(("The model's draft was written for", drafted_with))
    if indication.order_of_other_patient:
        shown.append(
            (
                "HL7 order not used",
                "An order with this accession number names another patient: none of its"
                " patient identifiers (PID-3) is this study's Patient ID"
                + ("" if (study.patient_id or "").strip() else ", and this study has none")
                + ". Neither its reason nor its order numbers are used; check the accession"
                " number and the Patient ID with the RIS.",
            )
        )
    return shown


def _accession_of_other_patient(session: DbSession, study: Study) -> bool:
    """Whether another study with this accession number has another Patient ID: an accession
    number is one order for one patient, so one of the two is misfiled (a worklist entry picked
    wrongly at the modality, a study moved at the PACS under new UIDs) or two RIS issue the
    same numbers. Said on the page, not held: the second case is a site's normal."""
    if not study.accession_number or not study.patient_id:
        return False
    other = session.scalar(
        select(Study.id)
        .where(
            Study.accession_number == study.accession_number,
            Study.id != study.id,
            Study.patient_id.is_not(None),
            Study.patient_id != study.patient_id,
        )
        .limit(1)
    )
    return other is not None


def _drafted_indication(session: DbSession, report: Report) -> str | None:
    """The indication in the prompt of the report's newest model draft, if it recorded one."""
    generation = session.scalar(
        select(ReportRevision.generation)
        .where(ReportRevision.report_id == report.id, ReportRevision.model_name.is_not(None))
        .order_by(ReportRevision.number.desc())
        .limit(1)
    )
    text = (generation or {}).get("indication")
    return text if isinstance(text, str) else None
