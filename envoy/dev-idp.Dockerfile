# The development IdP (and echo upstream) as an image: one static binary and nothing else,
# so it builds without pulling a base image. `make compose-build` puts the binary
# (x86_64-unknown-linux-musl) in target/compose/, the build context of docker-compose.yaml.
FROM scratch
COPY dev-idp /dev-idp
ENTRYPOINT ["/dev-idp"]
CMD ["serve", "--host", "0.0.0.0"]
