"""opennimble: a self-hosted implementation of the AWS Nimble Studio streaming-session API."""

__version__ = "0.1.0"
