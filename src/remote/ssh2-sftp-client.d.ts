/**
 * The part of ssh2-sftp-client 12 this project uses. @types/ssh2-sftp-client
 * lags the package (9.x typings for 12.x), so only what src/index.js really
 * does is declared here.
 */
declare module 'ssh2-sftp-client' {
  import type { Client, ConnectConfig, SFTPWrapper } from 'ssh2';

  /** Called for events nobody else handled; the defaults write to the console. */
  interface SftpClientCallbacks {
    error?: (err: Error) => void;
    end?: () => void;
    close?: () => void;
  }

  interface SftpConnectConfig extends ConnectConfig {
    debug?: (message: string) => void;
    promiseLimit?: number;
  }

  class SftpClient {
    constructor(clientName?: string, callbacks?: SftpClientCallbacks);
    /** The ssh2 Client underneath (src/index.js: `this.client = new Client()`). */
    readonly client: Client;
    /** Resolves with the raw ssh2 SFTP object once the sftp subsystem is open. */
    connect(config: SftpConnectConfig): Promise<SFTPWrapper>;
    /** Sends SSH disconnect and resolves on the socket's close (which may never come: bound it). */
    end(): Promise<boolean>;
  }

  export = SftpClient;
}
