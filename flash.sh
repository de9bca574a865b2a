#!/bin/sh
# flash.sh IMAGE TARGET — writes a Witness firmware image to a device.
# Not implemented yet: tracked by the firmware-image issue. Refuses to do anything.
echo "flash.sh: not implemented yet (the firmware image is not built yet)" >&2
exit 1
