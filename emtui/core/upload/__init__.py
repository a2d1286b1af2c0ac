"""Uploads: the durable queue, the targets (sftp, https, file), the run and its schedule."""
