package dev.morastream.streams;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * A throwaway PKI for TLS tests, made with the JDK's own {@code keytool} (no Bouncy Castle, no
 * files checked in): a self-signed CA, a broker key pair whose certificate the CA signs for
 * {@code IP:127.0.0.1} and {@code DNS:localhost} (so hostname verification passes as it is, with
 * {@code ssl.endpoint.identification.algorithm=https}), a truststore holding only the CA, and a
 * second truststore holding only an unrelated CA (a client that does not trust the broker).
 *
 * <p>Every store is PKCS12 with {@link #password()} as both store and key password. Keys are EC
 * P-256 (fast to generate) and valid for one day.
 *
 * @param brokerKeystore the broker's key and its chain (broker certificate, CA)
 * @param truststore the CA only
 * @param strangerTruststore another CA only: the broker's chain does not end there
 */
record TestCertificates(Path brokerKeystore, Path truststore, Path strangerTruststore, String password) {
    private static final long KEYTOOL_TIMEOUT_S = 30;

    /** Generates the stores under {@code dir} (created; a {@code keytool.log} there says what keytool did). */
    static TestCertificates generate(Path dir) {
        try {
            Files.createDirectories(dir);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        String password = "tls-test-secret";
        Keytool keytool = new Keytool(dir, password);
        Path ca = dir.resolve("ca.p12");
        Path caCert = dir.resolve("ca.crt");
        Path broker = dir.resolve("broker.p12");
        Path csr = dir.resolve("broker.csr");
        Path brokerCert = dir.resolve("broker.crt");
        Path truststore = dir.resolve("truststore.p12");

        keytool.run("-genkeypair", "-alias", "ca", "-keyalg", "EC", "-groupname", "secp256r1",
                "-dname", "CN=morastream test CA", "-ext", "bc:c", "-validity", "1", "-keystore", ca.toString());
        keytool.run("-exportcert", "-alias", "ca", "-rfc", "-file", caCert.toString(), "-keystore", ca.toString());
        keytool.run("-genkeypair", "-alias", "broker", "-keyalg", "EC", "-groupname", "secp256r1",
                "-dname", "CN=localhost", "-validity", "1", "-keystore", broker.toString());
        keytool.run("-certreq", "-alias", "broker", "-file", csr.toString(), "-keystore", broker.toString());
        keytool.run("-gencert", "-alias", "ca", "-infile", csr.toString(), "-outfile", brokerCert.toString(), "-rfc",
                "-validity", "1", "-ext", "SAN=IP:127.0.0.1,DNS:localhost", "-ext", "KU=digitalSignature",
                "-ext", "EKU=serverAuth", "-keystore", ca.toString());
        // the CA first, so that keytool can chain the signed reply to it (and the broker sends the chain)
        keytool.run("-importcert", "-alias", "ca", "-file", caCert.toString(), "-noprompt", "-keystore", broker.toString());
        keytool.run("-importcert", "-alias", "broker", "-file", brokerCert.toString(), "-keystore", broker.toString());
        keytool.run("-importcert", "-alias", "ca", "-file", caCert.toString(), "-noprompt", "-keystore", truststore.toString());

        Path stranger = dir.resolve("stranger-ca.p12");
        Path strangerCert = dir.resolve("stranger-ca.crt");
        Path strangerTruststore = dir.resolve("stranger-truststore.p12");
        keytool.run("-genkeypair", "-alias", "stranger", "-keyalg", "EC", "-groupname", "secp256r1",
                "-dname", "CN=some other CA", "-ext", "bc:c", "-validity", "1", "-keystore", stranger.toString());
        keytool.run("-exportcert", "-alias", "stranger", "-rfc", "-file", strangerCert.toString(), "-keystore", stranger.toString());
        keytool.run("-importcert", "-alias", "stranger", "-file", strangerCert.toString(), "-noprompt",
                "-keystore", strangerTruststore.toString());
        return new TestCertificates(broker, truststore, strangerTruststore, password);
    }

    /** The JDK's keytool as a child process, never prompting, bounded in time. */
    private static final class Keytool {
        private final Path dir;
        private final String password;
        private final Path log;
        private final String executable = Path.of(System.getProperty("java.home"), "bin", "keytool").toString();

        Keytool(Path dir, String password) {
            this.dir = dir;
            this.password = password;
            this.log = dir.resolve("keytool.log");
        }

        void run(String... args) {
            List<String> command = new ArrayList<>(List.of(executable,
                    // a short-lived JVM: the C1 compiler and the serial collector start quickest
                    "-J-XX:TieredStopAtLevel=1", "-J-XX:+UseSerialGC"));
            command.addAll(List.of(args));
            command.addAll(List.of("-storetype", "PKCS12", "-storepass", password));
            try {
                Files.writeString(log, "$ " + String.join(" ", args) + "\n", StandardCharsets.UTF_8,
                        StandardOpenOption.CREATE, StandardOpenOption.APPEND);
                Process p = new ProcessBuilder(command).directory(dir.toFile()).redirectErrorStream(true)
                        .redirectOutput(ProcessBuilder.Redirect.appendTo(log.toFile())).start();
                p.getOutputStream().close(); // a prompt reads end of input and fails instead of waiting
                if (!p.waitFor(KEYTOOL_TIMEOUT_S, TimeUnit.SECONDS)) {
                    p.destroyForcibly();
                    throw new IllegalStateException("keytool " + args[0] + " did not finish within " + KEYTOOL_TIMEOUT_S
                            + " s; " + log + ":\n" + Files.readString(log));
                }
                if (p.exitValue() != 0) {
                    throw new IllegalStateException("keytool " + String.join(" ", args) + " exited " + p.exitValue()
                            + "; " + log + ":\n" + Files.readString(log));
                }
            } catch (IOException e) {
                throw new UncheckedIOException("cannot run " + executable, e);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IllegalStateException("interrupted while running keytool", e);
            }
        }
    }
}
