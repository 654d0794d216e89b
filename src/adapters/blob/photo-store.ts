// Photos in a blob container, named by the SHA-256 of their bytes: written once by the source refresh
// (a policy's users), read by every mailbox worker that puts the photo on a contact.
import { RestError, type ContainerClient } from '@azure/storage-blob';
import type { Photo, PhotoStore } from '../../sync/ports';

export const photoContainerName = 'photos';

export class BlobPhotoStore implements PhotoStore {
  constructor(private readonly container: ContainerClient) {}

  async put(hash: string, photo: Photo): Promise<void> {
    try {
      // Content-addressed: a blob that exists already holds these bytes, so it is not sent again.
      await this.container.getBlockBlobClient(hash).uploadData(photo.bytes, {
        blobHTTPHeaders: { blobContentType: photo.contentType },
        conditions: { ifNoneMatch: '*' },
      });
    } catch (e) {
      if (e instanceof RestError && (e.statusCode === 409 || e.statusCode === 412)) return;
      throw e;
    }
  }

  async get(hash: string): Promise<Photo | undefined> {
    try {
      const blob = this.container.getBlobClient(hash);
      const response = await blob.download();
      const chunks: Buffer[] = [];
      for await (const chunk of response.readableStreamBody ?? [])
        chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk));
      return { contentType: response.contentType ?? 'image/jpeg', bytes: Buffer.concat(chunks) };
    } catch (e) {
      if (e instanceof RestError && e.statusCode === 404) return undefined;
      throw e;
    }
  }
}
