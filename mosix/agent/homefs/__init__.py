"""The job's working directory, kept on its home node: bound in at home, a FUSE proxy elsewhere.

`confine` keeps every path inside the exported directory, `exports` is the home agent's side
(file operations on the directories of the jobs whose home it is), `routes` puts it on the
agent's mutual-TLS API and `dataport` carries the file data (a TLS listener of its own, threads, not
asyncio), `remote`, `stream` and `fs` are the FUSE side on the node running the job, and
`mounts` decides per job, before a run or a restore, which of the two the container gets.
"""
