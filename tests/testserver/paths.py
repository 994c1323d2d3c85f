"""testserver.paths -- URL path handling both protocol servers need.

clean_path is Go's path.Clean as net/http.ServeMux applies it (Vault) and the
URI normalisation SigV4 signs (AWS, every service but S3): the same rules, so
one function serves both servers.
"""


def clean_path(p):
    """Remove '.' and '..' segments and duplicate slashes; keep a trailing slash.

    "" -> "/"; the result always starts with "/".
    """
    out = []
    for seg in p.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if out:
                out.pop()
            continue
        out.append(seg)
    clean = "/" + "/".join(out)
    if p.endswith("/") and clean != "/":
        clean += "/"
    return clean
