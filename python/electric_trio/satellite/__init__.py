"""The Satellite protocol of the electric-sql client: frames and messages (:mod:`.messages`)."""

from .messages import SatelliteFrameError as SatelliteFrameError
from .messages import decode as decode
from .messages import decode_message as decode_message
from .messages import encode as encode
from .messages import encode_message as encode_message
