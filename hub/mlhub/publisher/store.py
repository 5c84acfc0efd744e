"""The publisher's store: models, versions, aliases, deployments, events and API keys.

SQLAlchemy 2 over a URL that is a setting, so the embedded mode's SQLite file and a cluster's
Postgres are the same code. Like JupyterHub, the publisher is one asyncio process and keeps one
session (``Store.db``) for its lifetime; rows are small and every write is followed by a commit.

There are no migrations yet: ``create_all`` makes missing tables, and a column added to a table
since a database was made is added to it (nullable, no data to move: ``_add_new_columns``).
"""

import datetime
from pathlib import Path

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    inspect,
    select,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from mlhub.errors import NotFound
from mlhub.steps import DEFAULT_ALIAS, HISTORY_STEPS


def utcnow():
    """Naive UTC: SQLite drops time zones, so every stored time is UTC by convention."""
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


def isoformat(when):
    return None if when is None else when.isoformat(timespec="seconds") + "Z"


class Base(DeclarativeBase):
    pass


class Model(Base):
    """A published model: ``/models/<owner>/<name>``."""

    __tablename__ = "models"
    __table_args__ = (UniqueConstraint("owner", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(63))
    created: Mapped[datetime.datetime] = mapped_column(DateTime, default=utcnow)
    updated: Mapped[datetime.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    current_version: Mapped[str | None] = mapped_column(String(71))
    replicas: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(16), default="deploying")
    # hub users (besides the owner) and hub groups who may call the endpoint and read the model
    shared_with: Mapped[list] = mapped_column(JSON, default=list)
    shared_groups: Mapped[list] = mapped_column(JSON, default=list)
    # micro-batching of concurrent requests: {"max_size", "max_wait_ms"}, or None (off)
    batching: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    # CPU/memory given at publish: {"requests": {...}, "limits": {...}}, or None (the defaults)
    resources: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    # the fraction of requests its inference log keeps, or None (off)
    inference_log: Mapped[float | None] = mapped_column(Float, nullable=True)
    # the share of production's requests (percent) its canary gets, or None (no canary); the
    # canary's version is its alias ``canary``
    canary_percent: Mapped[float | None] = mapped_column(Float, nullable=True)
    # the share of production's requests (percent) sent to its shadow too, or None; the
    # shadow's version is its alias ``shadow``
    shadow_percent: Mapped[float | None] = mapped_column(Float, nullable=True)
    # seconds without a request after which it sleeps (0: never), or None (the platform's
    # ``IdlePolicy.sleep_after``); ``status`` is "sleeping" while production sleeps
    sleep_after: Mapped[int | None] = mapped_column(Integer, nullable=True)

    versions: Mapped[list["Version"]] = relationship(
        back_populates="model", cascade="all, delete-orphan", order_by="Version.created"
    )
    deployments: Mapped[list["Deployment"]] = relationship(cascade="all, delete-orphan")
    events: Mapped[list["Event"]] = relationship(cascade="all, delete-orphan")
    api_keys: Mapped[list["ApiKey"]] = relationship(
        cascade="all, delete-orphan", order_by="ApiKey.created"
    )
    # its aliases besides the default one (``production``, which is ``current_version``)
    aliases: Mapped[list["Alias"]] = relationship(
        cascade="all, delete-orphan", order_by="Alias.name"
    )

    @property
    def key(self):
        return f"{self.owner}/{self.name}"

    def version(self, digest):
        return next((v for v in self.versions if v.id == digest), None)

    def alias(self, name):
        return next((a for a in self.aliases if a.name == name), None)


class Version(Base):
    """One bundle of a model; ``id`` is the bundle digest (``sha256:<hex>``)."""

    __tablename__ = "versions"

    id: Mapped[str] = mapped_column(String(71), primary_key=True)
    model_id: Mapped[int] = mapped_column(
        ForeignKey("models.id", ondelete="CASCADE"), primary_key=True
    )
    created: Mapped[datetime.datetime] = mapped_column(DateTime, default=utcnow)
    # when this version last became the live one: "rollback previous" picks the latest before now
    live_since: Mapped[datetime.datetime | None] = mapped_column(DateTime)
    size: Mapped[int] = mapped_column(BigInteger)
    manifest: Mapped[dict] = mapped_column(JSON)
    artifact: Mapped[str] = mapped_column(Text)
    # the hub user (or service) who uploaded it; None for versions an older mlhub stored
    published_by: Mapped[str | None] = mapped_column(String(255))

    model: Mapped[Model] = relationship(back_populates="versions")


class Alias(Base):
    """A named pointer to a version besides the default alias: ``/models/<owner>/<name>@<name>``
    serves ``version`` once its processes are ready (``version`` None: its first move is still
    under way)."""

    __tablename__ = "aliases"
    __table_args__ = (UniqueConstraint("model_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(32))
    version: Mapped[str | None] = mapped_column(String(71))
    since: Mapped[datetime.datetime | None] = mapped_column(DateTime)
    asleep: Mapped[bool | None] = mapped_column(Boolean, nullable=True)  # idle, released


class Deployment(Base):
    """A running serving instance of a model version, as the deployer last reported it."""

    __tablename__ = "deployments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    version: Mapped[str] = mapped_column(String(71))
    state: Mapped[str] = mapped_column(String(16))
    port: Mapped[int | None] = mapped_column(Integer)
    pid: Mapped[int | None] = mapped_column(Integer)
    workers: Mapped[int] = mapped_column(Integer)
    started: Mapped[datetime.datetime | None] = mapped_column(DateTime)


class Event(Base):
    """A progress or health event; clients poll ``events?since=<id>``."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    version: Mapped[str | None] = mapped_column(String(71))
    time: Mapped[datetime.datetime] = mapped_column(DateTime, default=utcnow)
    step: Mapped[str] = mapped_column(String(32))
    level: Mapped[str] = mapped_column(String(8), default="info")
    message: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[str | None] = mapped_column(String(255))  # who asked for it; None: mlhub
    alias: Mapped[str | None] = mapped_column(String(32))  # the alias it moved; None: the default

    def to_dict(self):
        return {
            "id": self.id,
            "time": isoformat(self.time),
            "version": self.version,
            "step": self.step,
            "level": self.level,
            "message": self.message,
            "actor": self.actor,
            "alias": self.alias or DEFAULT_ALIAS,
        }


class ApiKey(Base):
    """An API key for one model's endpoint; only the key's sha256 is kept."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    key_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    created: Mapped[datetime.datetime] = mapped_column(DateTime, default=utcnow)

    def to_dict(self):
        return {"id": self.id, "description": self.description, "created": isoformat(self.created)}


def _sqlite_pragmas(dbapi_conn, _record):
    # WAL lets readers (the CLI inspecting the file, backups) run while the publisher writes;
    # foreign keys make ON DELETE CASCADE real.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _add_new_columns(engine):
    """``ALTER TABLE ... ADD COLUMN`` for each nullable column the models define and an existing
    table lacks (a database made by an older mlhub)."""
    tables = inspect(engine)
    with engine.begin() as conn:
        for table in Base.metadata.sorted_tables:
            have = {c["name"] for c in tables.get_columns(table.name)}
            for column in table.columns:
                if column.name not in have and column.nullable:
                    kind = column.type.compile(engine.dialect)
                    conn.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}"))


class Store:
    """Opens the database, creates missing tables, and answers the publisher's queries."""

    def __init__(self, url, echo=False):
        self.engine = create_engine(url, echo=echo)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
            if self.engine.url.database not in (None, "", ":memory:"):
                Path(self.engine.url.database).parent.mkdir(parents=True, exist_ok=True)
        Base.metadata.create_all(self.engine)
        _add_new_columns(self.engine)
        self.db = Session(self.engine, expire_on_commit=False)

    def close(self):
        self.db.close()
        self.engine.dispose()

    def commit(self):
        self.db.commit()

    # ------------------------------------------------------------ models

    def find_model(self, owner, name):
        return self.db.scalar(select(Model).where(Model.owner == owner, Model.name == name))

    def get_model(self, owner, name):
        model = self.find_model(owner, name)
        if model is None:
            raise NotFound(
                f"no model {owner}/{name}: publish it first, or check the name with "
                "'mlhub models list'",
                {"owner": owner, "name": name},
            )
        return model

    def list_models(self, owner=None):
        query = select(Model).order_by(Model.owner, Model.name)
        if owner is not None:
            query = query.where(Model.owner == owner)
        return list(self.db.scalars(query))

    def create_model(self, owner, name, replicas):
        model = Model(
            owner=owner,
            name=name,
            replicas=replicas,
            status="deploying",
            shared_with=[],
            shared_groups=[],
        )
        self.db.add(model)
        self.commit()
        return model

    def delete_model(self, model):
        self.db.delete(model)
        self.commit()

    # ------------------------------------------------------------ versions

    def add_version(self, model, digest, size, manifest, artifact, published_by=None):
        version = model.version(digest)
        if version is None:
            version = Version(
                id=digest,
                size=size,
                manifest=manifest,
                artifact=str(artifact),
                published_by=published_by,
            )
            model.versions.append(version)
            self.commit()
        return version

    def previous_version(self, model):
        """The version that was live most recently before the current one."""
        older = [v for v in model.versions if v.id != model.current_version and v.live_since]
        return max(older, key=lambda v: v.live_since, default=None)

    def referenced_artifacts(self):
        return set(self.db.scalars(select(Version.artifact).distinct()))

    # ------------------------------------------------------------ events

    def add_event(
        self,
        model,
        step,
        message="",
        *,
        version=None,
        level="info",
        time=None,
        actor=None,
        alias=None,
    ):
        ev = Event(
            model_id=model.id,
            version=version,
            step=step,
            level=level,
            message=message,
            time=time or utcnow(),
            actor=actor,
            alias=alias,
        )
        self.db.add(ev)
        self.commit()
        return ev

    def events(self, model, since=0, limit=1000):
        query = (
            select(Event)
            .where(Event.model_id == model.id, Event.id > since)
            .order_by(Event.id)
            .limit(limit)
        )
        return list(self.db.scalars(query))

    def last_event(self, model, steps=None):
        """The model's newest event (of ``steps`` if given)."""
        query = select(Event).where(Event.model_id == model.id)
        if steps is not None:
            query = query.where(Event.step.in_(steps))
        return self.db.scalars(query.order_by(Event.id.desc()).limit(1)).first()

    def history(self, model):
        """The model's events of ``HISTORY_STEPS``, oldest first (all of them: a model's
        history is short, one row per change)."""
        query = select(Event).where(Event.model_id == model.id, Event.step.in_(HISTORY_STEPS))
        return list(self.db.scalars(query.order_by(Event.id)))

    # ------------------------------------------------------------ aliases

    def add_alias(self, model, name):
        """The alias ``name`` of ``model``, made (pointing nowhere yet) if it has none."""
        alias = model.alias(name)
        if alias is None:
            alias = Alias(name=name)
            model.aliases.append(alias)
            self.commit()
        return alias

    def remove_alias(self, model, name):
        alias = model.alias(name)
        if alias is not None:
            model.aliases.remove(alias)
            self.commit()

    # ------------------------------------------------------------ deployments

    def set_deployments(self, model, instances):
        """Replace the model's deployment rows with what the deployer reports."""
        model.deployments.clear()
        for inst in instances:
            started = inst.get("started")
            model.deployments.append(
                Deployment(
                    version=inst["version"],
                    state=inst.get("state", "running"),
                    port=inst.get("port"),
                    pid=inst.get("pid"),
                    workers=inst.get("workers", model.replicas),
                    started=(
                        datetime.datetime.fromtimestamp(started, datetime.UTC).replace(tzinfo=None)
                        if started
                        else None
                    ),
                )
            )
        self.commit()

    # ------------------------------------------------------------ API keys

    def add_key(self, model, key_id, key_sha256, description):
        key = ApiKey(id=key_id, key_sha256=key_sha256, description=description)
        model.api_keys.append(key)
        self.commit()
        return key

    def delete_key(self, model, key_id):
        key = next((k for k in model.api_keys if k.id == key_id), None)
        if key is None:
            raise NotFound(
                f"model {model.key} has no API key {key_id!r}; "
                f"'mlhub models keys list {model.key}' shows its keys",
                {"key": key_id},
            )
        model.api_keys.remove(key)
        self.commit()
