/**
 * `npm start`: the sample on DATABASE_URL (default: an SQLite file in ./data, no server needed).
 *   DATABASE_URL=postgres://postgres@127.0.0.1:5432/test npm start
 *   DATABASE_URL=mysql://root@127.0.0.1:3306/test npm start
 *   TRACING=console npm start        (OpenTelemetry spans and metrics on the console)
 */
import { Logger } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { AppModule } from './app.module.js';
import { startConsoleTelemetry, traceRequests } from './telemetry.js';

// Before the app: the database takes the meter provider registered when it opens.
const tracing = await startConsoleTelemetry();
const app = await NestFactory.create(AppModule.forRoot());
if (tracing) await traceRequests(app);
// SIGTERM/SIGINT run the shutdown hooks: readiness goes down, then the pool drains and closes.
app.enableShutdownHooks();
const port = Number(process.env.PORT ?? 3000);
await app.listen(port);
Logger.log(`Sample listening on http://localhost:${port} — try /users/yoen`, 'Sample');
