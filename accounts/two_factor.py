"""When a session must show a second factor, and the pieces of enrolment."""

import qrcode
from django_otp.plugins.otp_totp.models import TOTPDevice
from qrcode.image.svg import SvgPathFillImage

# Set at sign-in when the user holds a confirmed device though policy does not ask for
# one: whoever enrolled a second factor must use it.
SESSION_DEVICE_ENROLLED = "two_factor_enrolled"


def needs_verification(request) -> bool:
    user = request.user
    # Right after login() the user object is fresh and not yet marked by django-otp.
    if not user.is_authenticated or getattr(user, "is_verified", bool)():
        return False
    return user.two_factor_required or bool(request.session.get(SESSION_DEVICE_ENROLLED))


def qr_code_svg(device: TOTPDevice) -> str:
    """The otpauth URI as inline SVG that every browser draws: one plain ``<path>`` on a
    white ``<rect>``. (django-otp's own writer emits ``svg:rect`` elements with a namespace
    prefix, which an HTML parser does not treat as SVG, so Chromium drew nothing.)"""
    image = qrcode.make(device.config_url, image_factory=SvgPathFillImage)
    return image.to_string(encoding="unicode")


def base32_secret(device: TOTPDevice) -> str:
    """The key as authenticator apps accept it when typed in."""
    from base64 import b32encode

    return b32encode(device.bin_key).decode()
