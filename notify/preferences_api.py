"""Citizen API: delivery preferences and push devices."""

from datetime import time
from typing import Literal

from django.http import HttpRequest
from ninja import Router, Schema, Status
from pydantic import Field, StrictBool, field_validator
from pydantic.json_schema import JsonDict

from chatserver.core.api_schemas import IdIn, PlainStr
from identity.ws_auth import request_session
from notify import preferences

router = Router(tags=["preferences"])


# Wall-clock times in Asia/Ulaanbaatar ("22:00", "07:30:00"), without an offset.
LOCAL_TIME: JsonDict = {"format": "local-time",
                        "pattern": r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$"}


class QuietHours(Schema):
    start: time = Field(json_schema_extra=LOCAL_TIME)
    end: time = Field(json_schema_extra=LOCAL_TIME)

    @field_validator("start", "end")
    @classmethod
    def local(cls, value: time) -> time:
        if value.tzinfo is not None:
            raise ValueError("a local time, without an offset")
        return value


class PreferencesOut(Schema):
    channels: dict[str, dict[str, bool]]
    locked: list[str]
    quiet_hours: QuietHours | None
    private_previews: bool
    email: str
    email_verified: bool
    language: str
    muted_agencies: list[int]


# {category: {channel: on}}; a switch that is locked on (LOCKED_ON) takes only true.
CHANNELS_SCHEMA: JsonDict = {"anyOf": [
    {"type": "object", "additionalProperties": False, "properties": {
        category: {"type": "object", "additionalProperties": False, "properties": {
            channel: {"const": True} if (category, channel) in preferences.LOCKED_ON
            else {"type": "boolean"} for channel in preferences.CHANNELS}}
        for category in preferences.CATEGORIES}},
    {"type": "null"}]}


class PreferencesIn(Schema):
    channels: dict[str, dict[str, StrictBool]] | None = Field(
        None, json_schema_extra=CHANNELS_SCHEMA)
    quiet_hours: QuietHours | None = Field(None, description="null clears them")
    private_previews: StrictBool | None = None
    language: str | None = Field(None, json_schema_extra={"enum": ["mn", "en", None]})
    muted_agencies: list[IdIn] | None = Field(None, max_length=500)
    email: str | None = Field(
        None, max_length=254, description="a confirmation link is sent to it; empty: no change",
        json_schema_extra={"anyOf": [{"type": "string", "format": "email", "maxLength": 254},
                                     {"type": "string", "maxLength": 0}, {"type": "null"}]})


class DeviceIn(Schema):
    token: PlainStr = Field(min_length=10, max_length=4096)
    platform: str = Field(json_schema_extra={"enum": ["android", "ios", "web"]})
    name: PlainStr = Field("", max_length=120)


class DeviceOut(Schema):
    id: int
    platform: str
    name: str


def _out(user_preferences: preferences.PreferencesView) -> PreferencesOut:
    view = user_preferences
    quiet = (QuietHours(start=view.quiet_start, end=view.quiet_end)
             if view.quiet_start and view.quiet_end else None)
    return PreferencesOut(channels=view.channels, locked=view.locked, quiet_hours=quiet,
                          private_previews=view.private_previews, email=view.email,
                          email_verified=view.email_verified, language=view.language,
                          muted_agencies=view.muted_agencies)


@router.get("preferences", response=PreferencesOut)
def preferences_read(request: HttpRequest) -> PreferencesOut:
    return _out(preferences.preferences_get(user=request_session(request).user))


@router.put("preferences", response=PreferencesOut)
def preferences_write(request: HttpRequest, payload: PreferencesIn) -> PreferencesOut:
    user = request_session(request).user
    sent = payload.model_dump(exclude_unset=True)
    quiet: tuple[time, time] | None | Literal[False] = False
    if "quiet_hours" in sent:
        quiet = (payload.quiet_hours.start, payload.quiet_hours.end) \
            if payload.quiet_hours else None
    if payload.email:  # first: a refused address (invalid, too many) changes nothing else
        preferences.email_set(user=user, email=payload.email)
    preferences.preferences_update(
        user=user, channels=payload.channels, quiet_hours=quiet,
        private_previews=payload.private_previews, language=payload.language,
        muted_agencies=payload.muted_agencies)
    return _out(preferences.preferences_get(user=user))


@router.post("devices", response={201: DeviceOut})
def device_add(request: HttpRequest, payload: DeviceIn) -> Status[DeviceOut]:
    device = preferences.device_register(session=request_session(request), token=payload.token,
                                         platform=payload.platform, name=payload.name)
    return Status(201, DeviceOut(id=device.pk, platform=device.platform, name=device.name))


@router.delete("devices/{id:device_id}", response={204: None})
def device_remove(request: HttpRequest, device_id: int) -> Status[None]:
    preferences.device_delete(user=request_session(request).user, device_id=device_id)
    return Status(204, None)
