"""moto's server, as `make run` and `make test` start it (scripts/stack.sh), with the one fix that
makes it answer as AWS does: a log event that an EventBridge rule writes to a CloudWatch Logs
group gets whole milliseconds as its timestamp. moto 5.1 writes a float there, which the AWS SDKs
refuse ("invalid number"), so `provider events` could not read what the bus received.

Usage: .tools/moto/bin/python scripts/local_aws.py -H 127.0.0.1 -p PORT   (moto_server's arguments)
"""

import sys

import moto.events.models as events_models
from moto.server import main

_unix_time_millis = events_models.unix_time_millis
events_models.unix_time_millis = lambda *args: int(_unix_time_millis(*args))

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
