package dev.morastream.ops.serve;

import dev.morastream.actors.serving.ServingPool;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** What {@code mora serve} starts: the shipped model with an empty registry, on a free port. */
class ServerTest {
    @TempDir Path dir;

    @Test
    void startsBecomesReadyAndAnswers() throws Exception {
        try (Server s = Server.start(new Server.Config(ServeFixture.TINY, dir.resolve("registry"), 5, "127.0.0.1", 0,
                ServingPool.Options.defaults(), HttpApi.Settings.defaults()))) {
            s.warm().get(30, TimeUnit.SECONDS);
            HttpClient http = HttpClient.newHttpClient();
            String base = "http://127.0.0.1:" + s.port();
            assertEquals(200, http.send(HttpRequest.newBuilder(URI.create(base + "/health/ready")).build(),
                    HttpResponse.BodyHandlers.ofString()).statusCode());
            HttpResponse<String> r = http.send(HttpRequest.newBuilder(URI.create(base + "/v1/completions")).header("Content-Type", "application/json")
                    .POST(HttpRequest.BodyPublishers.ofString("{\"model\":\"tiny\",\"prompt\":\"Q:\",\"max_tokens\":3}")).build(),
                    HttpResponse.BodyHandlers.ofString());
            assertEquals(200, r.statusCode(), r.body());
            assertTrue(r.body().contains("\"adapter_version\":\"tiny\""), r.body());
        }
    }

    @Test
    void aNodeWithoutTheServingRoleAnswersV1With503AndStillServesHealthAndMetrics() throws Exception {
        try (Server s = Server.start(new Server.Config(ServeFixture.TINY, dir.resolve("registry"), 5, "127.0.0.1", 0,
                ServingPool.Options.defaults(), HttpApi.Settings.defaults().withServing(false)))) {
            HttpClient http = HttpClient.newHttpClient();
            String base = "http://127.0.0.1:" + s.port();
            HttpResponse<String> r = http.send(HttpRequest.newBuilder(URI.create(base + "/v1/completions")).header("Content-Type", "application/json")
                    .POST(HttpRequest.BodyPublishers.ofString("{\"model\":\"tiny\",\"prompt\":\"Q:\",\"max_tokens\":3}")).build(),
                    HttpResponse.BodyHandlers.ofString());
            assertEquals(503, r.statusCode(), r.body());
            assertTrue(r.body().contains("no serving role"), r.body());
            assertEquals(503, http.send(HttpRequest.newBuilder(URI.create(base + "/v1/models")).build(),
                    HttpResponse.BodyHandlers.ofString()).statusCode());
            assertEquals(200, http.send(HttpRequest.newBuilder(URI.create(base + "/health/live")).build(),
                    HttpResponse.BodyHandlers.ofString()).statusCode());
            assertEquals(200, http.send(HttpRequest.newBuilder(URI.create(base + "/metrics")).build(),
                    HttpResponse.BodyHandlers.ofString()).statusCode());
        }
    }
}
