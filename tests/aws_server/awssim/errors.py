"""AWS error shapes shared by the server's APIs.

An AwsError is a testserver ProtocolError carrying AWS's error code; the
JSON protocol renders it as {"__type": code, "Message"|"message": text},
STS as its XML ErrorResponse, IMDS/ECS as plain text.  Errors raised by
AWS's front end (authentication, throttling) spell the key "message";
Secrets Manager's own errors spell it "Message", as AWS does.
"""

from testserver.core import ProtocolError

# codes the AWS front end answers (lower-case "message", before the service sees the request)
FRONT_END = {"UnrecognizedClientException", "InvalidSignatureException", "IncompleteSignatureException",
             "MissingAuthenticationTokenException", "ExpiredTokenException", "ThrottlingException",
             "UnknownOperationException", "SerializationException", "AccessDeniedException",
             "ValidationException", "RequestEntityTooLargeException"}


class AwsError(ProtocolError):
    def __init__(self, code, message, status=400, headers=None):
        super().__init__(status, [message], headers, code)


def not_found():
    return AwsError("ResourceNotFoundException", "Secrets Manager can't find the specified secret.")


def marked_for_deletion():
    return AwsError("InvalidRequestException",
                    "You can't perform this operation on the secret because it was marked for deletion.")


def invalid_parameter(msg):
    return AwsError("InvalidParameterException", msg)


def invalid_request(msg):
    return AwsError("InvalidRequestException", msg)


def validation(msg):
    return AwsError("ValidationException", "1 validation error detected: " + msg)
