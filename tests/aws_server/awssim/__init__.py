"""awssim -- the AWS side of tests/aws_server: Secrets Manager (JSON 1.1),
SigV4 verification, STS, IMDSv2 and ECS credentials on the shared HTTP layer
in tests/testserver.  See tests/aws_server/README.md."""
